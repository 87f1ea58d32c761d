FROM berth/busybox:latest
COPY missing.txt /
