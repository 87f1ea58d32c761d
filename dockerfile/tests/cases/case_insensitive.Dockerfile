from berth/busybox:latest As Lower
run echo lower > /lower.txt
From lower
Env Mixed=Case
Workdir /Mixed
Run test -f /lower.txt
cmd ["echo", "done"]
