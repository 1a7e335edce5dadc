/* src/passwd_cmd.h - `ringmta passwd USER`: prints an auth_users_file line with a yescrypt hash.
 *
 * The password is read from the terminal without echo (asked twice), or as one line from stdin
 * when stdin is not a terminal; never from the command line, where other users could see it in
 * the process list. The line goes to stdout as `USER:{CRYPT}$y$...`. */
#ifndef RINGMTA_SRC_PASSWD_CMD_H
#define RINGMTA_SRC_PASSWD_CMD_H

/* argv[0] is "passwd". Returns the process exit status: 0, 1 (error), 2 (usage). */
int passwd_cmd_main(int argc, char **argv);
#endif
