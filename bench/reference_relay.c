/* The plainest TCP relay in C, for bench/bench_ws_proxy.py: what one relay hop costs at best.
 *   cc -O2 -pthread -o reference_relay reference_relay.c && ./reference_relay UPSTREAM_PORT
 * prints PORT=<n> and relays every connection to 127.0.0.1:<n> to 127.0.0.1:UPSTREAM_PORT,
 * one thread per direction doing blocking read/write. No framing, no auth, no limits. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int upstream_port;

struct pair { int from, to; };

static void *pump(void *arg) {
    struct pair *p = arg;
    char buf[65536];
    for (;;) {
        ssize_t n = read(p->from, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(p->to, buf + off, (size_t)(n - off));
            if (w <= 0) goto done;
            off += w;
        }
    }
done:
    shutdown(p->to, SHUT_WR);
    return NULL;
}

static void *serve(void *arg) {
    int client = (int)(long)arg, one = 1;
    int upstream = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(upstream_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(upstream, (struct sockaddr *)&addr, sizeof addr) != 0) { close(client); close(upstream); return NULL; }
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct pair back = {upstream, client}, forth = {client, upstream};
    pthread_t t;
    pthread_create(&t, NULL, pump, &back);
    pump(&forth);
    pthread_join(t, NULL);
    close(client);
    close(upstream);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s UPSTREAM_PORT\n", argv[0]); return 2; }
    upstream_port = atoi(argv[1]);
    int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 16) != 0) { perror("listen"); return 1; }
    getsockname(listener, (struct sockaddr *)&addr, &len);
    printf("PORT=%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) continue;
        pthread_t t;
        pthread_create(&t, NULL, serve, (void *)(long)client);
        pthread_detach(t);
    }
}
