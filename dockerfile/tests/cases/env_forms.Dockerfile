FROM berth/busybox:latest
ENV PLAIN value
ENV OLD_FORM multiple words   here
ENV NEW=1 QUOTED="a b" SINGLE='$NOPE' ESCAPED=a\ b\$c EMPTY=""
ENV REF=$NEW REF2=${QUOTED} DEF=${UNSET:-fallback} ALT=${NEW:+set} ALT_UNSET=${UNSET:+x}
ENV NEW=2 SAME_INSTR=$NEW
ENV DQ="double \"quoted\" $NEW" MIXED=pre"mid dle"'post $x'
ENV PATH=/opt/bin:$PATH
ENV lower=case
ENV OLD_QUOTED "quoted old form"
RUN test "$SAME_INSTR" = 1 && test "$NEW" = 2 && test "$DEF" = fallback && \
    test "$OLD_FORM" = "multiple words   here" && test "$ESCAPED" = 'a b$c'
