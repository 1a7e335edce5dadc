/* tests/unit/tls_cache_test.c - the shard's client session cache. */
#include <criterion/criterion.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "tls/tls_cache.h"
#include "tls/tls_ctx.h"

static SSL_SESSION *
session(SSL_CTX *ctx)
{
	SSL_SESSION *s = SSL_SESSION_new(ctx);
	cr_assert_not_null(s);
	return s;
}

Test(tls_cache, one_session_per_host_replaced_by_the_next)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	struct tls_cache *c;
	cr_assert_eq(tls_cache_new(8, &c), 0);
	cr_assert_null(tls_cache_get(c, SLICE_LIT("mx.a.example"), false));
	SSL_SESSION *s1 = session(ctx);
	tls_cache_put(c, SLICE_LIT("mx.a.example"), s1, false);
	SSL_SESSION *got = tls_cache_get(c, SLICE_LIT("MX.A.example"), false);
	cr_assert_eq(got, s1);
	SSL_SESSION_free(got);
	cr_assert_null(tls_cache_get(c, SLICE_LIT("mx.a.example"), true), "not verified");
	SSL_SESSION *s2 = session(ctx);
	tls_cache_put(c, SLICE_LIT("mx.a.example"), s2, true);
	cr_assert_eq(tls_cache_count(c), 1);
	got = tls_cache_get(c, SLICE_LIT("mx.a.example"), true);
	cr_assert_eq(got, s2);
	SSL_SESSION_free(got);
	cr_assert_null(tls_cache_get(c, SLICE_LIT("mx.b.example"), false));
	tls_cache_free(c);
	SSL_CTX_free(ctx);
}

Test(tls_cache, a_full_set_drops_its_least_recently_used_entry)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	struct tls_cache *c;
	cr_assert_eq(tls_cache_new(TLS_CACHE_WAYS, &c), 0);   /* one set */
	char name[32];
	for (uint32_t i = 0; i < TLS_CACHE_WAYS; i++) {
		snprintf(name, sizeof(name), "h%u.example", i);
		tls_cache_put(c, slice_make(name, strlen(name)), session(ctx), false);
	}
	cr_assert_eq(tls_cache_count(c), TLS_CACHE_WAYS);
	SSL_SESSION *got = tls_cache_get(c, SLICE_LIT("h0.example"), false);   /* h1 is oldest now */
	cr_assert_not_null(got);
	SSL_SESSION_free(got);
	tls_cache_put(c, SLICE_LIT("new.example"), session(ctx), false);
	cr_assert_eq(tls_cache_count(c), TLS_CACHE_WAYS, "bounded");
	cr_assert_null(tls_cache_get(c, SLICE_LIT("h1.example"), false));
	for (uint32_t i = 0; i < TLS_CACHE_WAYS; i++) {
		if (i == 1)
			continue;
		snprintf(name, sizeof(name), "h%u.example", i);
		got = tls_cache_get(c, slice_make(name, strlen(name)), false);
		cr_assert_not_null(got, "%s", name);
		SSL_SESSION_free(got);
	}
	got = tls_cache_get(c, SLICE_LIT("new.example"), false);
	cr_assert_not_null(got);
	SSL_SESSION_free(got);
	/* Names past the limit are neither stored nor found. */
	char longname[TLS_HOST_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname));
	tls_cache_put(c, slice_make(longname, sizeof(longname)), session(ctx), false);
	cr_assert_null(tls_cache_get(c, slice_make(longname, sizeof(longname)), false));
	tls_cache_free(c);
	SSL_CTX_free(ctx);
}
