FROM berth/busybox:latest
RUN echo before
RUN exit 3
RUN echo never
