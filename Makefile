# Thin wrapper around meson. `make run` and `make test` do all the set-up on a fresh Debian 12.
BUILD      ?= build
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
CONFIG     ?=
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR    ?=
DEB_BUILD  ?= build-deb
PACKAGES   := meson ninja-build pkg-config gcc clang libclang-rt-14-dev liburing-dev \
              libcriterion-dev python3 swaks strace libldns-dev android-libboringssl-dev \
              nsd unbound ldnsutils fuse3 libfuse3-dev libcrypt-dev openssl ca-certificates \
              debhelper dpkg-dev prometheus
FUZZ_TARGETS := smtp_server_fuzz data_scan_fuzz smtp_addr_fuzz record_fuzz config_fuzz \
                data_stuff_fuzz smtp_reply_fuzz smtp_client_fuzz received_fuzz dns_answer_fuzz \
                smtp_auth_fuzz tls_stage_fuzz mail_header_fuzz http_request_fuzz qctl_fuzz \
                msa_fixup_fuzz

.PHONY: all deps build run test unit fuzz fuzz-build bench clean install deb test-package

all: build

# Installs only what is missing; apt-get update runs once, and only when something is. As root,
# also creates MAIL_OWNER, the system user ringmta runs as once it has bound its ports.
MAIL_OWNER ?= ringmta
deps:
	@missing=""; for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! getent passwd $(MAIL_OWNER) >/dev/null; then \
		echo "creating the system user $(MAIL_OWNER)"; \
		useradd --system --no-create-home --shell /usr/sbin/nologin $(MAIL_OWNER); \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

# ninja reconfigures by itself when a meson.build changes (the file lists are explicit).
build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@test -x $(BUILD)/ringmta || { echo "the daemon is not built yet"; exit 1; }
	$(BUILD)/ringmta $(if $(CONFIG),-c $(CONFIG))

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false --buildtype=debugoptimized

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

# A short fixed-time run of every fuzz target over its seed corpus (a crash, or any report of
# the address or undefined-behaviour sanitizer, fails the run).
fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 $(FUZZ_BUILD)/tests/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/$$t- \
			$(FUZZ_BUILD)/corpus/$$t tests/fuzz/corpus/$$t 2>$(FUZZ_BUILD)/$$t.log \
			|| { tail -50 $(FUZZ_BUILD)/$$t.log; exit 1; }; \
		grep -E 'stat::number_of_executed_units' $(FUZZ_BUILD)/$$t.log; \
	done

# Fails on the first failing suite; the last line sums up what ran.
test: build
	meson test -C $(BUILD) --print-errorlogs
	$(MAKE) fuzz
	@/usr/bin/python3 -c "import json; r = [json.loads(l)['result'] for l in open('$(BUILD)/meson-logs/testlog.json')]; \
		print('make test: %d passed, %d failed' % (r.count('OK'), len(r) - r.count('OK') - r.count('SKIP')))"

# ringmta in $(PREFIX)/sbin (sendmail next to it, mailq in bin), the generated sample
# $(SYSCONFDIR)/ringmta/ringmta.conf, ringmta(8), ringmta.conf(5) and the systemd unit.
install: build
	meson configure $(BUILD) -Dprefix=$(PREFIX) -Dsysconfdir=$(SYSCONFDIR)
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir $(DESTDIR))

# The Debian package, built by dpkg-buildpackage (debian/) from a copy of the files git sees in
# this tree (edits included), so nothing is written outside $(DEB_BUILD).
deb: deps
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/ringmta
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(DEB_BUILD)/ringmta
	cd $(DEB_BUILD)/ringmta && DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -b -us -uc
	@ls $(DEB_BUILD)/*.deb

# Builds the package, installs it into a copy-on-write root of this machine (overlayfs, in
# private mount and network namespaces) and checks files, user, start-up and delivery.
test-package: deb
	/usr/bin/python3 tests/package/test_package.py $(DEB_BUILD)

bench: build
	$(BUILD)/perf/data_scan_bench
	$(BUILD)/perf/data_stuff_bench

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(DEB_BUILD)
