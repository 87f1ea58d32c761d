FROM berth/busybox:latest
ENV BASE_DIR=/srv
WORKDIR $BASE_DIR
WORKDIR app
WORKDIR ./sub/../data
RUN pwd > /pwd.txt && test "$(pwd)" = /srv/app/data
WORKDIR /
WORKDIR ${BASE_DIR}/final
USER 1000:1000
RUN test "$(id -u)" = 1000 && test "$(id -g)" = 1000
USER nobody
