package actions

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Store is the actions service's memory across restarts, one bbolt file in
// its own state directory: the bans it has seen (so a ban announced again,
// by a signal or by a reconciliation, is not acted on twice, and a ban
// lifted while it was away is noticed), and the jobs (one per event and
// action) not done yet, which a restart runs.
type Store struct {
	db *bolt.DB
}

var (
	bucketBans  = []byte("bans") // jail \x00 prefix → seenBan (JSON)
	bucketJobs  = []byte("jobs") // sequence (8 bytes, big endian) → Job (JSON)
	bucketMeta  = []byte("meta") // "baseline" → set once the first reconciliation is recorded
	keyBaseline = []byte("baseline")
)

// seenBan is what the store keeps per active ban.
type seenBan struct {
	Start   int64 `json:"start"`
	Expires int64 `json:"expires"` // 0: permanent
}

// Job is one event to be acted on by one action; it stays in the store
// until the action is done with it (succeeded, gave up, or dropped).
type Job struct {
	Seq     uint64    `json:"-"`
	Action  string    `json:"action"`
	Kind    Kind      `json:"kind"`
	Jail    string    `json:"jail"`
	Prefix  string    `json:"prefix"`
	Start   int64     `json:"start"`
	Expires int64     `json:"expires"`
	Reason  string    `json:"reason,omitempty"`
	Seen    time.Time `json:"-"`
}

// Event returns the event the job is about.
func (j Job) Event() Event {
	e := Event{Kind: j.Kind, Jail: j.Jail, Reason: j.Reason, Seen: j.Seen}
	e.Prefix, _ = netip.ParsePrefix(j.Prefix)
	if j.Start != 0 {
		e.Start = time.Unix(j.Start, 0)
	}
	if j.Expires != 0 {
		e.Expires = time.Unix(j.Expires, 0)
	}
	return e
}

// OpenStore opens (or creates) dir/actions.db. A second process on the same
// file fails after one second.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "actions.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: another jailkeeper actions holds it", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketJobs, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func banKey(jail string, p netip.Prefix) []byte { return []byte(jail + "\x00" + p.String()) }

// Decide is called by Apply for each event that is new to the store (a ban
// not seen before, an unban of a ban seen) and returns the jobs to record
// for it.
type Decide func(e Event) []Job

// Apply records a batch of events in one transaction and returns the jobs
// created, with their sequence numbers. A ban already seen only updates
// its expiry (an extension is not a new ban); an unban of a ban never seen
// is ignored.
func (s *Store) Apply(events []Event, decide Decide) ([]Job, error) {
	var out []Job
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		bans, jobs := tx.Bucket(bucketBans), tx.Bucket(bucketJobs)
		for _, e := range events {
			k := banKey(e.Jail, e.Prefix)
			old := bans.Get(k)
			switch e.Kind {
			case Ban:
				v := seenBan{Start: unix(e.Start), Expires: unix(e.Expires)}
				if old != nil {
					var o seenBan
					if json.Unmarshal(old, &o) == nil {
						v.Start = o.Start
					}
				}
				b, _ := json.Marshal(v)
				if err := bans.Put(k, b); err != nil {
					return err
				}
				if old != nil {
					continue
				}
			case Unban:
				if old == nil {
					continue
				}
				var o seenBan
				if json.Unmarshal(old, &o) == nil {
					e.Start, e.Expires = timeOf(o.Start), timeOf(o.Expires)
				}
				if err := bans.Delete(k); err != nil {
					return err
				}
			}
			for _, j := range decide(e) {
				seq, err := jobs.NextSequence()
				if err != nil {
					return err
				}
				j.Seq = seq
				b, err := json.Marshal(j)
				if err != nil {
					return err
				}
				if err := jobs.Put(seqKey(seq), b); err != nil {
					return err
				}
				out = append(out, j)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording %d events: %w", len(events), err)
	}
	return out, nil
}

// Done removes finished jobs.
func (s *Store) Done(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs)
		for _, q := range seqs {
			if err := b.Delete(seqKey(q)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("removing %d finished jobs: %w", len(seqs), err)
	}
	return nil
}

// Pending returns the jobs not done yet, oldest first.
func (s *Store) Pending() ([]Job, error) {
	var out []Job
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			var j Job
			if err := json.Unmarshal(v, &j); err != nil {
				return fmt.Errorf("job %x: %w", k, err)
			}
			j.Seq = binary.BigEndian.Uint64(k)
			out = append(out, j)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading pending jobs: %w", err)
	}
	return out, nil
}

// SeenBan is an active ban the store knows of.
type SeenBan struct {
	Jail   string
	Prefix netip.Prefix
}

// Seen returns every ban the store holds as active.
func (s *Store) Seen() ([]SeenBan, error) {
	var out []SeenBan
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBans).ForEach(func(k, _ []byte) error {
			jail, pfx, ok := strings.Cut(string(k), "\x00")
			p, err := netip.ParsePrefix(pfx)
			if !ok || err != nil {
				return nil
			}
			out = append(out, SeenBan{jail, p})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading seen bans: %w", err)
	}
	return out, nil
}

func seqKey(q uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], q)
	return k[:]
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOf(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// HasBaseline reports whether a first reconciliation has been recorded: a
// store without one has never seen the daemon's bans.
func (s *Store) HasBaseline() (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketMeta).Get(keyBaseline) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("reading the store's baseline: %w", err)
	}
	return ok, nil
}

// SetBaseline records that the first reconciliation is done.
func (s *Store) SetBaseline() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyBaseline, []byte(time.Now().UTC().Format(time.RFC3339)))
	})
	if err != nil {
		return fmt.Errorf("recording the store's baseline: %w", err)
	}
	return nil
}
