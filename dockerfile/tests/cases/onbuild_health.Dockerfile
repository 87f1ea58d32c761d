FROM berth/busybox:latest
MAINTAINER Berth Tests <tests@example.com>
ONBUILD RUN echo triggered > /onbuild.txt
ONBUILD   COPY . /app/  
onbuild ENV FROM_TRIGGER=1
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m30s --retries=3 \
    CMD wget -q -O- http://localhost/ || exit 1
STOPSIGNAL SIGQUIT
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
