ARG BASE=berth/busybox:latest
ARG GLOBAL_ONLY="not visible in the stage"
FROM ${BASE}
ARG BASE
ARG APP_VERSION=1.2.3
ARG EMPTY=
ARG NODEFAULT
ENV VERSION_ENV=$APP_VERSION BASE_SEEN=$BASE NODEF="${NODEFAULT:-none}" GLOBAL="${GLOBAL_ONLY:-unset in stage}" EMPTY_SEEN="[${EMPTY}]"
LABEL version="${APP_VERSION}" base=$BASE
WORKDIR /app/$APP_VERSION
RUN echo "$APP_VERSION" > version.txt && test "$(cat /app/1.2.3/version.txt)" = 1.2.3
ARG APP_VERSION=9.9
ENV AFTER=$APP_VERSION
RUN test "$APP_VERSION" = 9.9 && test -z "$GLOBAL_ONLY"
