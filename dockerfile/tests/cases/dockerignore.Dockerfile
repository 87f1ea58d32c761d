FROM berth/busybox:latest
COPY . /ctx/
RUN cd /ctx && \
    test -f keep.txt && test -f .hidden && test -f README.md && test ! -e notes.md && \
    test ! -e app.log && test ! -e logs/app.log && test -d logs && \
    test -f src/main.c && test ! -e src/a.log && test ! -e src/deep/x.tmp && test -f src/deep/y.c && \
    test ! -e build/out.bin && test -f build/keep/me.txt && \
    test ! -e secret && test -f other/secret && test ! -e spaced.txt && \
    test ! -e .dockerignore && test ! -e Dockerfile
