/* src/notify.c - the sd_notify datagram; see notify.h. */
#include "src/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int notify_fd = -1;   /* connected to $NOTIFY_SOCKET; main thread only */

int
notify_open(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (path == NULL || path[0] == '\0')
		return 0;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path))
		return -EINVAL;
	memcpy(sun.sun_path, path, len);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';   /* the abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	socklen_t sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (connect(fd, (const struct sockaddr *)&sun, sa_len) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	notify_fd = fd;
	return 0;
}

int
notify_send(const char *state)
{
	if (notify_fd < 0)
		return 0;
	return send(notify_fd, state, strlen(state), MSG_NOSIGNAL) < 0 ? -errno : 0;
}
