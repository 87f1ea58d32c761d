/* UDP echo server for tests/tests/shared_placement.rs (busybox has no UDP
 * nc), built there with `gcc -static`: binds 0.0.0.0:PORT, prints
 * `ready`, and answers every datagram with `echo:` and the datagram,
 * to its sender. Datagrams of any size up to 65507 bytes; the answer is
 * cut to 65507. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp_echo PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("bind");
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    static char in[65536], out[65507];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, in, sizeof in, 0, (struct sockaddr *)&from, &len);
        if (n < 0)
            continue;
        size_t m = (size_t)n;
        if (m > sizeof out - 5)
            m = sizeof out - 5;
        memcpy(out, "echo:", 5);
        memcpy(out + 5, in, m);
        sendto(s, out, m + 5, 0, (struct sockaddr *)&from, len);
    }
}
