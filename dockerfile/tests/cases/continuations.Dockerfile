FROM berth/busybox:latest
# A comment before a continued instruction.
RUN echo one \
    two \
  # a comment inside the continuation is dropped
    three > /cont.txt
RUN echo a \  	
    b > /trailing-ws.txt
ENV A=1 \
    B=2 \

    C=3
LABEL multi="line one \
line two"
RUN set -e; \
    test "$(cat /cont.txt)" = "one two three"; \
    test "$(cat /trailing-ws.txt)" = "a b"; \
    test "$A$B$C" = "123"
\
CMD echo hello \
    world
