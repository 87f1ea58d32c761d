FROM berth/busybox:latest
ENV GREETING=hi
ENTRYPOINT echo "$GREETING" from the entrypoint
