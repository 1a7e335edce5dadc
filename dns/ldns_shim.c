/* dns/ldns_shim.c - the OpenSSL 3 names libldns.a references and BoringSSL's libcrypto lacks.
 *
 * ringmta links libldns.a statically against BoringSSL's libcrypto so that the process holds one
 * libcrypto (see ../meson.build). ldns reaches these 13 functions only for DNSSEC key handling
 * and DANE certificate checks, neither of which ringmta asks of ldns (dns/ uses ldns to build and
 * parse packets). The first five map onto BoringSSL's equivalents; the rest fail the way OpenSSL
 * reports failure, so that a caller that does reach them gets an error, not a crash.
 *
 * This file includes neither OpenSSL's nor BoringSSL's headers (no file may include both): the
 * types are opaque pointers here, which is all the linker and the calling convention see. */
#include <stddef.h>
#include <stdint.h>

/* BoringSSL's names (libcrypto.so in /usr/lib/x86_64-linux-gnu/android). */
int EVP_PKEY_id(const void *pkey);
int EVP_PKEY_base_id(const void *pkey);
size_t sk_num(const void *sk);
void *sk_pop(void *sk);
void sk_pop_free(void *sk, void (*free_fn)(void *));

/* OpenSSL 3's names, as libldns.a calls them. */
int EVP_PKEY_get_id(const void *pkey);
int EVP_PKEY_get_base_id(const void *pkey);
int OPENSSL_sk_num(const void *sk);
void *OPENSSL_sk_pop(void *sk);
void OPENSSL_sk_pop_free(void *sk, void (*free_fn)(void *));
void *UI_OpenSSL(void);
void *ENGINE_load_private_key(void *engine, const char *key_id, void *ui, void *cb_data);
int SSL_CTX_dane_enable(void *ctx);
unsigned long SSL_CTX_dane_set_flags(void *ctx, unsigned long flags);
int SSL_dane_enable(void *ssl, const char *basedomain);
int SSL_dane_tlsa_add(void *ssl, uint8_t usage, uint8_t selector, uint8_t mtype,
	const unsigned char *data, size_t dlen);
void *SSL_get0_dane(void *ssl);
void X509_STORE_CTX_set0_dane(void *ctx, void *dane);

int
EVP_PKEY_get_id(const void *pkey)
{
	return EVP_PKEY_id(pkey);
}

int
EVP_PKEY_get_base_id(const void *pkey)
{
	return EVP_PKEY_base_id(pkey);
}

/* OpenSSL returns -1 for a NULL stack; BoringSSL's sk_num returns 0 for it. */
int
OPENSSL_sk_num(const void *sk)
{
	return sk == NULL ? -1 : (int)sk_num(sk);
}

void *
OPENSSL_sk_pop(void *sk)
{
	return sk == NULL ? NULL : sk_pop(sk);
}

void
OPENSSL_sk_pop_free(void *sk, void (*free_fn)(void *))
{
	if (sk != NULL)
		sk_pop_free(sk, free_fn);
}

/* No UI methods and no engines: loading a key through an engine fails. */
void *
UI_OpenSSL(void)
{
	return NULL;
}

void *
ENGINE_load_private_key(void *engine, const char *key_id, void *ui, void *cb_data)
{
	(void)engine;
	(void)key_id;
	(void)ui;
	(void)cb_data;
	return NULL;
}

/* DANE inside libssl: not available; ldns's DANE verification then reports an error. */
int
SSL_CTX_dane_enable(void *ctx)
{
	(void)ctx;
	return -1;
}

unsigned long
SSL_CTX_dane_set_flags(void *ctx, unsigned long flags)
{
	(void)ctx;
	(void)flags;
	return 0;
}

int
SSL_dane_enable(void *ssl, const char *basedomain)
{
	(void)ssl;
	(void)basedomain;
	return -1;
}

int
SSL_dane_tlsa_add(void *ssl, uint8_t usage, uint8_t selector, uint8_t mtype,
	const unsigned char *data, size_t dlen)
{
	(void)ssl;
	(void)usage;
	(void)selector;
	(void)mtype;
	(void)data;
	(void)dlen;
	return -1;
}

void *
SSL_get0_dane(void *ssl)
{
	(void)ssl;
	return NULL;
}

void
X509_STORE_CTX_set0_dane(void *ctx, void *dane)
{
	(void)ctx;
	(void)dane;
}
