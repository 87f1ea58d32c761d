FROM berth/busybox:latest
COPY one.txt /target/
COPY one.txt two.txt /multi/
COPY dir /copied-dir
COPY dir/ /copied-dir2/
COPY *.txt /glob/
COPY ["with space.txt", "/json dest/"]
ADD one.txt /added.txt
COPY --chown=1:1 one.txt /owned.txt
COPY run.sh /usr/local/bin/
RUN run.sh && test -f /ran.txt && test -f /copied-dir/inner.txt && test -f /copied-dir2/nested/deep.txt && \
    test -f "/json dest/with space.txt" && test -f /glob/two.txt
