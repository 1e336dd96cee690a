/* sd_notify by hand: one datagram on a unix socket (see sdnotify.h). */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

bt_status_t bt_sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa;
    size_t len;
    ssize_t n;
    int fd, err;

    if (path == NULL || path[0] == '\0') {
        return BT_OK;   /* not started by systemd with Type=notify */
    }
    len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
        bt_warn("sdnotify: NOTIFY_SOCKET %s is not a unix socket address", path);
        return BT_ERR_INVALID_ARG;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0';   /* abstract namespace: no trailing NUL */
    } else {
        len++;                   /* a path address includes its NUL */
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
        bt_warn("sdnotify: socket: %s", bt_strerror(err));
        return BT_ERR_IO;
    }
    do {
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    } while (n < 0 && errno == EINTR);
    err = errno;
    close(fd);
    if (n < 0) {
        bt_warn("sdnotify: send to %s: %s", path, bt_strerror(err));
        return BT_ERR_IO;
    }
    return BT_OK;
}
