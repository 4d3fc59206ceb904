/* LD_PRELOAD shim for the load generator (bench/dhcp.sh): every socket it opens gets a
 * receive buffer of RCVBUF_BYTES (SO_RCVBUFFORCE, root only). perfdhcp's own 208 KiB buffer
 * overflowed when a server answered a burst at once (homespotd sends the ACKs of a group
 * commit together), so the drops it counted were its own socket's, not the server's; raising
 * net.core.rmem_default instead would change the machine's root namespace. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (!real)
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    int fd = real(domain, type, protocol);
    const char *v = getenv("RCVBUF_BYTES");
    if (fd >= 0 && v) {
        int n = atoi(v);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof n);
    }
    return fd;
}
