/* tests/fuzz/config_fuzz.c - the configuration parser on random files.
 *
 * Input: a control byte, then the text. Bit 0 of the control byte: the text is one -o override
 * instead of a file. Checked: a load either fails with a message and leaves the config untouched,
 * or gives a config whose every field is in its range; config_print of it loads back to the same
 * octets; config_check and the policy built from it run on it without a fault. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf/config.h"
#include "conf/policy.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct config fuzz_default;
static struct config fuzz_cfg;
static struct config fuzz_again;

static bool
fuzz_str_ok(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void
fuzz_check_addrs(const struct config_addr *a, uint32_t count, uint32_t max)
{
	CHECK(count <= max);
	for (uint32_t i = 0; i < count; i++) {
		int family = a[i].sa.ss_family;
		CHECK(family == AF_INET || family == AF_INET6);
		CHECK(a[i].sa_len == (family == AF_INET ? sizeof(struct sockaddr_in)
			: sizeof(struct sockaddr_in6)));
		uint16_t port = family == AF_INET ? ((const struct sockaddr_in *)&a[i].sa)->sin_port
			: ((const struct sockaddr_in6 *)&a[i].sa)->sin6_port;
		CHECK(port != 0);
	}
}

static void
fuzz_check_ranges(const struct config *c)
{
	CHECK(c->listen_count >= 1);
	fuzz_check_addrs(c->listen, c->listen_count, CONFIG_LISTEN_MAX);
	fuzz_check_addrs(c->submission_listen, c->submission_listen_count, CONFIG_LISTEN_MAX);
	fuzz_check_addrs(c->smtps_listen, c->smtps_listen_count, CONFIG_LISTEN_MAX);
	fuzz_check_addrs(c->dns, c->dns_server_count, CONFIG_DNS_SERVERS_MAX);
	CHECK(c->myhostname[0] != '\0' && fuzz_str_ok(c->myhostname, sizeof(c->myhostname)));
	CHECK(c->local_domain_count <= CONFIG_DOMAINS_MAX);
	for (uint32_t i = 0; i < c->local_domain_count; i++) {
		const char *d = c->local_domains[i];
		CHECK(d[0] != '\0' && fuzz_str_ok(d, sizeof(c->local_domains[i])));
		for (const char *p = d; *p != '\0'; p++)
			CHECK(!(*p >= 'A' && *p <= 'Z'));
	}
	CHECK(c->relay_network_count <= CONFIG_NETWORKS_MAX);
	for (uint32_t i = 0; i < c->relay_network_count; i++) {
		const struct config_network *n = &c->relay_networks[i];
		CHECK(n->family == AF_INET || n->family == AF_INET6);
		CHECK(n->prefix_len <= (n->family == AF_INET ? 32 : 128));
	}
	CHECK(c->max_message_size >= CONFIG_MESSAGE_SIZE_MIN);
	CHECK(c->max_message_size <= CONFIG_MESSAGE_SIZE_MAX);
	CHECK(c->max_recipients >= 1 && c->max_recipients <= 1000);
	CHECK(c->max_connections >= 1 && c->max_connections <= CONFIG_CONNECTIONS_MAX);
	CHECK(c->bad_cmd_max >= 1 && c->bad_cmd_max <= CONFIG_BAD_CMD_MAX_MAX);
	CHECK(c->cmd_timeout_ms >= 1000 && c->cmd_timeout_ms <= CONFIG_TIMEOUT_MAX_S * 1000u);
	CHECK(c->data_timeout_ms >= 1000 && c->data_timeout_ms <= CONFIG_TIMEOUT_MAX_S * 1000u);
	CHECK(c->queue_lifetime_s >= 1 && c->queue_lifetime_s <= CONFIG_QUEUE_LIFETIME_MAX_S);
	CHECK(c->shards >= 1 && c->shards <= CONFIG_SHARDS_MAX);
	CHECK(c->remote_smtp_port >= 1);
	CHECK(fuzz_str_ok(c->relayhost, sizeof(c->relayhost)));
	CHECK(fuzz_str_ok(c->relayhost_name, sizeof(c->relayhost_name)));
	CHECK((c->relayhost[0] == '\0') == (c->relayhost_name[0] == '\0'));
	CHECK(fuzz_str_ok(c->spool_dir, sizeof(c->spool_dir)));
	CHECK(fuzz_str_ok(c->log_file, sizeof(c->log_file)));
}

/* config_print's text loads back, over a fresh default, to the very same octets. */
static void
fuzz_round_trip(const struct config *c)
{
	char err[CONFIG_ERR_MAX];
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	CHECK(f != NULL);
	config_print(c, f);
	CHECK(fclose(f) == 0);
	memcpy(&fuzz_again, &fuzz_default, sizeof(fuzz_again));
	CHECK(config_load_buf(&fuzz_again, "printed", text, len, err, sizeof(err)) == 0);
	CHECK(memcmp(c, &fuzz_again, sizeof(fuzz_again)) == 0);
	free(text);
}

static void
fuzz_policy(struct config *c)
{
	char err[CONFIG_ERR_MAX];
	struct policy p;
	c->local_users_file[0] = '\0';   /* no file reads while fuzzing */
	CHECK(policy_init(&p, c, err, sizeof(err)) == 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	(void)policy_client_may_relay(&p, (const struct sockaddr *)&sin);
	(void)policy_client_may_relay(&p, (const struct sockaddr *)&sin6);
	for (uint32_t i = 0; i < c->local_domain_count; i++) {
		struct slice d = slice_make(c->local_domains[i], strlen(c->local_domains[i]));
		CHECK(policy_domain_is_local(&p, d));
		CHECK(policy_rcpt(&p, false, SLICE_LIT("postmaster"), d, false) == SMTP_RCPT_OK);
	}
	policy_fini(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[CONFIG_FILE_SIZE_MAX + 1];
	char err[CONFIG_ERR_MAX];
	if (fuzz_default.listen_count == 0)
		config_default(&fuzz_default);
	if (size < 1 || size - 1 > CONFIG_FILE_SIZE_MAX)
		return 0;
	memcpy(&fuzz_cfg, &fuzz_default, sizeof(fuzz_cfg));
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	int rc;
	err[0] = '\0';
	if ((data[0] & 1u) && memchr(text, '\0', size - 1) == NULL)
		rc = config_set(&fuzz_cfg, text, err, sizeof(err));
	else
		rc = config_load_buf(&fuzz_cfg, "fuzz", text, size - 1, err, sizeof(err));
	if (rc != 0) {
		CHECK(rc == -1 && err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);
		for (const char *p = err; *p != '\0'; p++)
			CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
		CHECK(memcmp(&fuzz_cfg, &fuzz_default, sizeof(fuzz_cfg)) == 0);
		return 0;
	}
	fuzz_check_ranges(&fuzz_cfg);
	fuzz_round_trip(&fuzz_cfg);
	(void)config_check(&fuzz_cfg, err, sizeof(err));
	fuzz_policy(&fuzz_cfg);
	return 0;
}
