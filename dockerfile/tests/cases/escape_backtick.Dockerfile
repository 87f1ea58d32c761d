# escape=`

FROM berth/busybox:latest
ENV WINPATH=C:\Users\app `
    SECOND=x`$y
LABEL path="C:\Program Files\app" tick="a``b" `
      plain=back\slash
RUN echo C:\dir `
    && echo done > /bt.txt
WORKDIR /data`
/sub
RUN test "$WINPATH" = 'C:\Users\app' && test "$SECOND" = 'x$y' && test "$(pwd)" = /data/sub
CMD ["C:\\not\\a\\path"]
