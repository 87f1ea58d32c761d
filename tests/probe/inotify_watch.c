/* A recursive inotify watcher for the share-events test (vm_share_events.rs),
 * built with `gcc -static` and run in a busybox container (Debian's busybox
 * has no inotifyd).
 *
 *   inotify_watch DIR
 *
 * Watches DIR and every directory under it (new ones included), creates
 * DIR/.ready once the watches are set, and prints one line per event:
 * "<k> <path relative to DIR>", k one of n (IN_CREATE), c (IN_MODIFY),
 * e (IN_ATTRIB), m (IN_MOVED_FROM), y (IN_MOVED_TO), d (IN_DELETE).
 * Exits after the create of DIR/END. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WATCHES 4096
#define MASK (IN_CREATE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE)

static int fd;
static char *paths[MAX_WATCHES]; /* relative dir of each wd ("" for the root) */
static char root[PATH_MAX];

static void add(const char *rel) {
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s%s%s", root, *rel ? "/" : "", rel);
    int wd = inotify_add_watch(fd, full, MASK | IN_ONLYDIR);
    if (wd < 0 || wd >= MAX_WATCHES) {
        return;
    }
    free(paths[wd]);
    paths[wd] = strdup(rel);
    DIR *d = opendir(full);
    if (!d) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) {
            continue;
        }
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        add(sub);
    }
    closedir(d);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: inotify_watch DIR\n");
        return 2;
    }
    snprintf(root, sizeof root, "%s", argv[1]);
    fd = inotify_init1(0);
    if (fd < 0) {
        perror("inotify_init1");
        return 1;
    }
    add("");
    char ready[PATH_MAX];
    snprintf(ready, sizeof ready, "%s/.ready", root);
    int r = open(ready, O_CREAT | O_WRONLY, 0644);
    if (r < 0) {
        perror("ready");
        return 1;
    }
    close(r);
    char buf[64 * 1024] __attribute__((aligned(8)));
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            perror("read");
            return 1;
        }
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                printf("overflow\n");
                continue;
            }
            if (ev->wd < 0 || ev->wd >= MAX_WATCHES || !paths[ev->wd] || !ev->len) {
                continue;
            }
            const char *dir = paths[ev->wd];
            char rel[PATH_MAX];
            snprintf(rel, sizeof rel, "%s%s%s", dir, *dir ? "/" : "", ev->name);
            static const struct { unsigned bit; char k; } kinds[] = {
                {IN_CREATE, 'n'}, {IN_MODIFY, 'c'}, {IN_ATTRIB, 'e'},
                {IN_MOVED_FROM, 'm'}, {IN_MOVED_TO, 'y'}, {IN_DELETE, 'd'},
            };
            for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
                if (ev->mask & kinds[i].bit) {
                    printf("%c %s\n", kinds[i].k, rel);
                }
            }
            if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && (ev->mask & IN_ISDIR)) {
                add(rel);
            }
            if ((ev->mask & IN_CREATE) && !strcmp(rel, "END")) {
                fflush(stdout);
                return 0;
            }
        }
        fflush(stdout);
    }
}
