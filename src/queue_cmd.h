/* src/queue_cmd.h - `ringmta queue ...`: the administrator's queue commands (and, through
 * src/sendmail, mailq and sendmail -bp / -q).
 *
 * Reads the configuration as the daemon does (-c FILE, else the package's
 * /etc/ringmta/ringmta.conf if it exists, then -o key=value) to find the control sockets
 * (config_control_socket), sends the request (proto/qctl) to shard 0, learns the shard
 * count from the answer's header, asks every other shard the same, and merges: a listing is the
 * shards' listings one after the other (--json: one JSON array), a summary adds the shards'
 * counts up, a command on one ID succeeds where the message is. Blocking I/O: a command-line
 * tool, not the daemon. Exit status: 0; 1 the command failed (no such message, an error
 * answer); 2 usage or configuration; 3 the daemon is not running. */
#ifndef RINGMTA_SRC_QUEUE_CMD_H
#define RINGMTA_SRC_QUEUE_CMD_H

#define QUEUE_CMD_TIMEOUT_S      60       /* per read from a shard's socket */
#define QUEUE_CMD_START_WAIT_MS  10000u   /* for the other shards' sockets of a daemon starting */

/* argv[0] is "queue". Returns the process exit status. */
int queue_cmd_main(int argc, char **argv);
#endif
