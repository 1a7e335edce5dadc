/* src/sendmail.h - sendmail(1) and mailq for scripts: `ringmta sendmail`, or ringmta run as
 * `sendmail` or `mailq` (symbolic links).
 *
 * The message (stdin) goes to the running daemon over the Unix socket of local_listen as one
 * SMTP transaction, so it is queued as durably as any other: the exit status is 0 only after the
 * daemon's 250 to the end of data. The daemon knows the submitting user from the socket
 * (SO_PEERCRED) and logs it as the client. Before sending, the message gets the header fields it
 * lacks (From:, Date:, Message-ID:; RFC 5322 3.6); with -t its recipients come from To:, Cc: and
 * Bcc:; Bcc: fields are removed with or without -t (RFC 5322 3.6.3). Line ends become CRLF and dots are stuffed on the way out
 * (proto/data_stuff), so no line of the input can end the data early.
 *
 * Exit statuses (sysexits.h, as Postfix's sendmail): 0 queued; EX_USAGE bad options;
 * EX_DATAERR bad input (no recipients with -t, an unparsable address field, a message over
 * max_message_size, an address refused as malformed); EX_NOUSER a recipient refused as unknown;
 * EX_UNAVAILABLE another permanent refusal; EX_TEMPFAIL the daemon is not running or answered
 * 4xx; EX_CONFIG a bad configuration file.
 *
 * -bp and -q (and mailq) run `ringmta queue list` and `ringmta queue flush`. */
#ifndef RINGMTA_SRC_SENDMAIL_H
#define RINGMTA_SRC_SENDMAIL_H

#define SENDMAIL_TIMEOUT_S 300u   /* per reply from the daemon, as RFC 5321 4.5.3.2 allows */

/* argv[0] is the program name ("sendmail"), options and recipients follow. Returns the exit
 * status. */
int sendmail_main(int argc, char **argv);

/* mailq: `ringmta queue list`. Returns only when that cannot be run (EX_OSERR). */
int sendmail_mailq(int argc, char **argv);
#endif
