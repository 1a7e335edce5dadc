/* src/passwd_cmd.c - `ringmta passwd USER`; see passwd_cmd.h. */
#include "src/passwd_cmd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "conf/passwd.h"

/* Room for the longest password, its line end and one octet to notice a longer one. */
#define PASSWD_CMD_READ_MAX (PASSWD_PASSWORD_LEN_MAX + 3u)

/* One line from fd without its line end. Returns its length, or -1 (EOF before any octet, a read
 * error, or a line longer than PASSWD_PASSWORD_LEN_MAX). */
static int
passwd_cmd_read_line(int fd, char *buf)
{
	size_t len = 0;
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return len > 0 && len <= PASSWD_PASSWORD_LEN_MAX ? (int)len : -1;
		if (c == '\n')
			break;
		if (len == PASSWD_CMD_READ_MAX - 1)
			return -1;
		buf[len++] = c;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	return len <= PASSWD_PASSWORD_LEN_MAX ? (int)len : -1;
}

/* Prompts on stderr and reads a line from the terminal on stdin with echo off. */
static int
passwd_cmd_read_tty(const char *prompt, char *buf)
{
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) != 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	/* Echo goes off before the prompt shows, so that nothing typed after it is echoed. */
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
		return -1;
	fputs(prompt, stderr);
	fflush(stderr);
	int len = passwd_cmd_read_line(STDIN_FILENO, buf);
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return len;
}

/* The password, from the terminal (twice, they must agree) or from stdin. */
static int
passwd_cmd_password(char *buf)
{
	if (!isatty(STDIN_FILENO))
		return passwd_cmd_read_line(STDIN_FILENO, buf);
	char again[PASSWD_CMD_READ_MAX];
	int len = passwd_cmd_read_tty("Password: ", buf);
	int len2 = len > 0 ? passwd_cmd_read_tty("Again: ", again) : -1;
	bool same = len > 0 && len == len2 && memcmp(buf, again, (size_t)len) == 0;
	explicit_bzero(again, sizeof(again));
	if (len > 0 && !same) {
		fprintf(stderr, "ringmta passwd: the passwords differ\n");
		return -1;
	}
	return len;
}

static bool
passwd_cmd_user_ok(const char *user)
{
	size_t len = strlen(user);
	if (len == 0 || len > PASSWD_USER_LEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)user[i];
		if (c <= 0x20 || c == 0x7f || c == ':')
			return false;
	}
	return true;
}

int
passwd_cmd_main(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: ringmta passwd USER   (the password is read from the terminal "
			"or stdin)\n");
		return 2;
	}
	const char *user = argv[1];
	if (!passwd_cmd_user_ok(user)) {
		fprintf(stderr, "ringmta passwd: a user name is 1..%u octets without ':', blanks or "
			"control characters\n", PASSWD_USER_LEN_MAX);
		return 2;
	}
	char pw[PASSWD_CMD_READ_MAX];
	int len = passwd_cmd_password(pw);
	char hash[PASSWD_LINE_MAX];
	int rc = len > 0 ? passwd_hash_new(slice_make(pw, (size_t)len), hash, sizeof(hash)) : -EINVAL;
	explicit_bzero(pw, sizeof(pw));
	if (rc < 0) {
		fprintf(stderr, "ringmta passwd: %s\n", rc == -EINVAL
			? "no password read (one line of 1..255 octets without NUL)" : "crypt failed");
		return 1;
	}
	printf("%s:{CRYPT}%s\n", user, hash);
	return fflush(stdout) == 0 ? 0 : 1;
}
