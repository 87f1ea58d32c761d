FROM berth/busybox:latest
RUN ["/bin/sh", "-c", "echo exec form > /exec.txt"]
RUN [ "sh", "-c", "test -f /exec.txt" ]
RUN echo '["looks", "like", "json"]' > /notjson.txt
SHELL ["/bin/sh", "-ec"]
RUN echo "shell form with -e" > /shell.txt
ENTRYPOINT ["/bin/echo", "entry"]
CMD ['not', 'json']
