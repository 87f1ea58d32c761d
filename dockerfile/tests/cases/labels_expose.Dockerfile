FROM berth/busybox:latest
ARG PORT=8080
ENV PORTS="9000 9001/udp"
LABEL maintainer James Turnbull "james@example.com"
LABEL "com.example.vendor"="ACME Inc" com.example.version=1.0 \
      description="multi word \
value" empty=""
LABEL org.opencontainers.image.title=overridden
LABEL port=$PORT escaped=\$PORT single='$PORT'
EXPOSE 80 443/tcp ${PORT}
EXPOSE $PORTS
EXPOSE 53/udp 80/tcp
