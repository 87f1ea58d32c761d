FROM berth/busybox:latest
ARG SRC=files
ARG DEST=/dest
ENV FILE=one.txt USERNAME=daemon SIG=SIGTERM VOL=/data
COPY ${SRC}/$FILE $DEST/
COPY $SRC/two.txt ${DEST}/renamed.txt
COPY --chown=${USERNAME}:daemon $SRC/three.txt /owned/
WORKDIR ${DEST:-/fallback}/work
VOLUME ${VOL} $DEST/vol
STOPSIGNAL $SIG
LABEL file=$FILE literal=\${FILE} braces=${FILE}x unset=${NOPE}
EXPOSE ${PORT:-7000} ${VOL:+7001}
RUN test -f /dest/one.txt && test -f /dest/renamed.txt && test -f /owned/three.txt && test "$(pwd)" = /dest/work
USER ${USERNAME}
