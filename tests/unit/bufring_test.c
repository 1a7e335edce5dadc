/* tests/unit/bufring_test.c - provided receive buffers: spare buffers, kept out of the kernel's
 * ring, taken and given back with the same references. */
#include <criterion/criterion.h>

#include "base/bufring.h"
#include "base/ring.h"

static struct ring ring;
static struct bufring bufs;

static void
setup(void)
{
	cr_assert_eq(ring_init(&ring, 0, 16, 0), 0);
	cr_assert_eq(bufring_init_spare(&bufs, &ring, 1, 4, 2, 1024), 0);
}

static void
teardown(void)
{
	bufring_fini(&bufs);
	ring_fini(&ring);
}

TestSuite(bufring, .init = setup, .fini = teardown);

Test(bufring, spares_are_ids_past_the_kernel_ones_and_run_out)
{
	int32_t a = bufring_spare_take(&bufs);
	int32_t b = bufring_spare_take(&bufs);
	cr_assert(a >= 4 && a < 6);
	cr_assert(b >= 4 && b < 6);
	cr_assert_neq(a, b);
	cr_assert_eq(bufring_spare_take(&bufs), -1);
	cr_assert_eq(bufring_held(&bufs), 2);
	bufring_release(&bufs, (uint16_t)a);
	bufring_release(&bufs, (uint16_t)b);
	cr_assert_eq(bufring_held(&bufs), 0);
}

Test(bufring, a_spare_goes_back_with_its_last_reference)
{
	int32_t a = bufring_spare_take(&bufs);
	(void)bufring_spare_take(&bufs);
	bufring_hold(&bufs, (uint16_t)a);          /* the spool keeps a body slice */
	bufring_release(&bufs, (uint16_t)a);       /* the transport is done */
	cr_assert_eq(bufring_spare_take(&bufs), -1);
	bufring_release(&bufs, (uint16_t)a);       /* the spool is done */
	cr_assert_eq(bufring_spare_take(&bufs), a);
}

Test(bufring, which_knows_spare_buffers)
{
	int32_t a = bufring_spare_take(&bufs);
	uint8_t *p = bufring_buf(&bufs, (uint16_t)a);
	p[0] = 1;                                  /* the memory is there */
	p[1023] = 2;
	cr_assert_eq(bufring_which(&bufs, p + 1023), a);
	cr_assert_eq(bufring_which(&bufs, bufring_buf(&bufs, 0)), 0);
	cr_assert_eq(bufring_which(&bufs, p + 2048), -1);
	bufring_release(&bufs, (uint16_t)a);
}

Test(bufring, no_spares_without_asking)
{
	bufring_fini(&bufs);
	cr_assert_eq(bufring_init(&bufs, &ring, 2, 4, 1024), 0);
	cr_assert_eq(bufring_spare_take(&bufs), -1);
}
