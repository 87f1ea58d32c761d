# escape=\

FROM berth/busybox:latest
RUN echo crlf \
    joined > /crlf.txt
ENV A=1 \
    B=2
RUN test "$(cat /crlf.txt)" = "crlf joined" && test "$B" = 2
CMD ["cat", "/crlf.txt"]
