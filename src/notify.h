/* src/notify.h - service readiness for systemd (Type=notify), written by hand: no libsystemd.
 *
 * The sd_notify protocol: one datagram of "KEY=value" lines to the Unix socket named by
 * $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). The socket is connected at
 * start-up, before the privilege drop (the daemon becomes mail_owner before it is ready, and a
 * notify socket need not be writable by that user). Without the variable nothing is sent. Main
 * thread only. */
#ifndef RINGMTA_SRC_NOTIFY_H
#define RINGMTA_SRC_NOTIFY_H

/* Connects to $NOTIFY_SOCKET. Returns 0 (also when it is not set), or -errno; a failure is the
 * caller's to log, never a reason to stop. */
int notify_open(void);

/* Sends `state` ("READY=1", "STOPPING=1") on the socket notify_open connected. Returns 0 (also
 * without one), or -errno. */
int notify_send(const char *state);
#endif
