/* src/notify.h - service readiness for systemd (Type=notify), written by hand: no libsystemd.
 *
 * The sd_notify protocol: one datagram of "KEY=value" lines to the Unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). Without the variable nothing
 * is sent. Main thread only. */
#ifndef RINGMTA_SRC_NOTIFY_H
#define RINGMTA_SRC_NOTIFY_H

/* Sends `state` ("READY=1", "STOPPING=1"). Returns 0 (also when $NOTIFY_SOCKET is not set), or
 * -errno; a failure is the caller's to log, never a reason to stop. */
int notify_send(const char *state);
#endif
