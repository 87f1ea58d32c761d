ARG GREETING=hello
FROM berth/busybox:latest AS Builder
ARG GREETING
RUN mkdir -p /out && echo "$GREETING from builder" > /out/greeting.txt
COPY data.txt /out/
FROM berth/busybox:latest as second
RUN echo second > /second.txt
FROM berth/busybox:latest
COPY --from=builder /out/ /app/
COPY --from=1 /second.txt /app/second.txt
COPY --from=second /second.txt /app/again.txt
RUN test "$(cat /app/greeting.txt)" = "hello from builder" && test -f /app/data.txt
CMD ["cat", "/app/greeting.txt"]
