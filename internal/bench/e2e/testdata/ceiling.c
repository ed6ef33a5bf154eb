/* ceiling: the fastest plain reader of the journal the benchmark compares
 * jailkeeper with. It opens the journal files of DIR, matches
 * _SYSTEMD_UNIT=UNIT, and for every entry calls sd_journal_next, reads
 * MESSAGE and the realtime stamp, and nothing else. It prints the number of
 * entries and the seconds the loop took (after open and match).
 *
 *   cc -O2 -o ceiling ceiling.c $(pkg-config --cflags --libs libsystemd)
 *   ./ceiling DIR UNIT
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-journal.h>

int main(int argc, char **argv) {
	sd_journal *j;
	char match[512];
	struct timespec t0, t1;
	uint64_t n = 0, bytes = 0, usec;
	const void *d;
	size_t l;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: ceiling DIR UNIT\n");
		return 2;
	}
	if ((r = sd_journal_open_directory(&j, argv[1], 0)) < 0) {
		fprintf(stderr, "ceiling: opening %s: %s\n", argv[1], strerror(-r));
		return 1;
	}
	snprintf(match, sizeof match, "_SYSTEMD_UNIT=%s", argv[2]);
	if ((r = sd_journal_add_match(j, match, 0)) < 0) {
		fprintf(stderr, "ceiling: match %s: %s\n", match, strerror(-r));
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((r = sd_journal_next(j)) > 0) {
		if (sd_journal_get_data(j, "MESSAGE", &d, &l) < 0 || sd_journal_get_realtime_usec(j, &usec) < 0) {
			fprintf(stderr, "ceiling: entry %llu has no MESSAGE or time\n", (unsigned long long)n);
			return 1;
		}
		bytes += l + (usec & 1);
		n++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r < 0) {
		fprintf(stderr, "ceiling: sd_journal_next: %s\n", strerror(-r));
		return 1;
	}
	printf("%llu %.6f %llu\n", (unsigned long long)n,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, (unsigned long long)bytes);
	sd_journal_close(j);
	return 0;
}
