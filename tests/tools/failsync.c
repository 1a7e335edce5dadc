/* tests/tools/failsync.c - an LD_PRELOAD shim that makes syncfs(2) fail with EIO on demand.
 *
 * No file system here fails syncfs when asked (no device-mapper; the kernel does not pass syncfs
 * to a FUSE server), so the Maildir failure test (tests/integration/test_maildir_sync_error.py)
 * runs the daemon with this library preloaded: the first FAILSYNC_SYNCFS_COUNT calls of syncfs
 * return -1 with errno EIO without syncing anything, later ones are the real call. Each failure
 * is also counted as one octet appended to FAILSYNC_SYNCFS_LOG (if set), so that the test knows
 * the shim was reached. The daemon's helper thread calls syncfs through libc, which is what a
 * preloaded symbol replaces; requests on the ring (the fsync mode's fdatasyncs) never pass here. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static atomic_long failsync_done;

int
syncfs(int fd)
{
	const char *count = getenv("FAILSYNC_SYNCFS_COUNT");
	long limit = count != NULL ? strtol(count, NULL, 10) : 0;
	if (atomic_fetch_add(&failsync_done, 1) < limit) {
		const char *log = getenv("FAILSYNC_SYNCFS_LOG");
		if (log != NULL) {
			int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
			if (lfd >= 0) {
				(void)!write(lfd, "x", 1);
				close(lfd);
			}
		}
		errno = EIO;
		return -1;
	}
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
	return real(fd);
}
