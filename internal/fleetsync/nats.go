package fleetsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jailkeeper/jailkeeper/pkg/config"
	"github.com/jailkeeper/jailkeeper/pkg/fleet"
)

// MarkerTTL is how long the bucket keeps the marker of a key whose TTL ran
// out (watchers see the marker as the key's deletion).
const MarkerTTL = time.Hour

// NATSStore is the bucket on a NATS JetStream server; it implements Store.
type NATSStore struct {
	// Log, if set, receives what the watch has to say (see Watch).
	Log Logger

	nc     *nats.Conn
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	subPre string // $KV.<bucket>.
}

// Dial connects to the servers of s and opens its bucket, creating it
// (per-key TTL enabled, three replicas when three servers or more are
// listed) if it does not exist. Creating needs JetStream's stream-create
// permission; an admin may create the bucket beforehand instead.
func Dial(ctx context.Context, s config.ResolvedSync, name string) (*NATSStore, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true)}
	if s.Creds != "" {
		opts = append(opts, nats.UserCredentials(s.Creds))
	}
	if s.TLSCA != "" {
		opts = append(opts, nats.RootCAs(s.TLSCA))
	}
	if s.TLSCert != "" {
		opts = append(opts, nats.ClientCert(s.TLSCert, s.TLSKey))
	}
	nc, err := nats.Connect(strings.Join(s.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", strings.Join(s.Servers, ", "), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	kv, err := js.KeyValue(ctx, s.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		replicas := 1
		if len(s.Servers) >= 3 {
			replicas = 3
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.Bucket, History: 1,
			MaxValueSize: fleet.MaxValueSize, LimitMarkerTTL: MarkerTTL, Replicas: replicas, Storage: jetstream.FileStorage})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, s.Bucket)
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening bucket %s: %w", s.Bucket, err)
	}
	return &NATSStore{nc: nc, js: js, kv: kv, subPre: "$KV." + s.Bucket + "."}, nil
}

// Close closes the connection.
func (n *NATSStore) Close() { n.nc.Close() }

// PutRetry is how long Put keeps retrying a put that failed (a NATS node
// lost, the client reconnecting to another one).
const PutRetry = 30 * time.Second

// putAttempt bounds one attempt: an acknowledgement lost with its node
// never comes.
const putAttempt = 2 * time.Second

// Put sets key with the message TTL ttl (0: none). A failed put is
// retried for up to PutRetry: putting the same value twice is harmless.
func (n *NATSStore) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	var opts []jetstream.PublishOpt
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	end := time.Now().Add(PutRetry)
	for {
		actx, cancel := context.WithTimeout(ctx, putAttempt)
		_, err := n.js.PublishMsg(actx, &nats.Msg{Subject: n.subPre + key, Data: value}, opts...)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(end) || errors.Is(err, nats.ErrPermissionViolation) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Delete deletes key.
func (n *NATSStore) Delete(ctx context.Context, key string) error {
	return n.kv.Delete(ctx, key)
}

// Keys lists the keys matching filter.
func (n *NATSStore) Keys(ctx context.Context, filter string) ([]string, error) {
	l, err := n.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Stop() }()
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out, nil
}

// valuesWait bounds Values: a watch that never reaches the end of the keys
// present (its node lost) must not hold the caller for ever.
const valuesWait = 30 * time.Second

// Values returns the keys matching filter with their values.
func (n *NATSStore) Values(ctx context.Context, filter string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, valuesWait)
	defer cancel()
	w, err := n.kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	out := map[string][]byte{}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading the keys %s: %w", filter, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("the bucket's watcher ended")
			}
			if e == nil {
				return out, nil
			}
			out[e.Key()] = e.Value()
		}
	}
}

// The watch is an ordered consumer that lives on one node of the
// cluster. When that node is lost, the client library notices only after
// two missed heartbeats (10 s) and may fail to recreate it until another
// 10 s have passed. Watch notices sooner: it asks the bucket's stream for
// its last sequence every stallProbe, and when the stream holds messages
// the watch has not delivered while the watch has delivered nothing for
// stallAfter, it recreates the watch from the last revision it delivered.
const (
	stallProbe = time.Second
	stallAfter = 2 * time.Second
)

// Watch calls apply with batches of the bucket's changes to ban keys,
// starting with every key present, until ctx ends. initial is called once
// the keys present at the start have been applied. A watch that stalls
// (see stallAfter) is recreated where it stopped.
func (n *NATSStore) Watch(ctx context.Context, apply func([]Update), initial func()) error {
	var last uint64 // revision of the last change delivered
	first := true
	for {
		var opts []jetstream.WatchOpt
		if last > 0 {
			opts = append(opts, jetstream.ResumeFromRevision(last+1))
		}
		// Everything up to the stream's last message now is either
		// delivered by the watch's start or gone (expired, superseded).
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		base, err := n.lastSeq(pctx)
		cancel()
		var w jetstream.KeyWatcher
		if err == nil {
			w, err = n.kv.WatchFiltered(ctx, []string{fleet.KeyPrefix + ".>"}, opts...)
		}
		if err != nil {
			if first {
				return fmt.Errorf("watching the bucket: %w", err)
			}
			// The stream may have no leader yet: try again.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		first = false
		stalled, err := n.follow(ctx, w, base, &last, apply, &initial)
		_ = w.Stop()
		if !stalled {
			return err
		}
		if n.Log != nil {
			n.Log(4, fmt.Sprintf("the bucket's watch delivered nothing for %s while the bucket holds newer changes (a NATS node lost?): watching again from revision %d", stallAfter, last+1))
		}
	}
}

// follow delivers the changes of w until ctx ends (false, nil), w ends
// (false, error) or w stalls (true, nil). last is the revision of the last
// change delivered; base is the stream's last sequence just before w was
// created, which w's start covers.
func (n *NATSStore) follow(ctx context.Context, w jetstream.KeyWatcher, base uint64, last *uint64, apply func([]Update), initial *func()) (bool, error) {
	probe := time.NewTicker(stallProbe)
	defer probe.Stop()
	ch := w.Updates()
	quietSince := time.Now()
	started := false // w's start is delivered
	for {
		var batch []Update
		select {
		case <-ctx.Done():
			return false, nil
		case <-probe.C:
			if !started || len(ch) > 0 || time.Since(quietSince) < stallAfter {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, stallProbe)
			seq, err := n.lastSeq(pctx)
			cancel()
			if err == nil && seq > *last {
				return true, nil
			}
		case e, ok := <-ch:
			if !ok {
				return false, errors.New("the bucket's watcher ended")
			}
			done := e == nil
			if e != nil {
				batch = append(batch, update(e))
				*last = max(*last, e.Revision())
			}
		drain:
			for len(batch) < 4096 && !done {
				select {
				case e, ok = <-ch:
					if !ok {
						break drain
					}
					if e == nil {
						done = true
						break drain
					}
					batch = append(batch, update(e))
					*last = max(*last, e.Revision())
				default:
					break drain
				}
			}
			if len(batch) > 0 {
				apply(batch)
			}
			if done {
				started = true
				*last = max(*last, base)
				if *initial != nil {
					(*initial)()
					*initial = nil
				}
			}
			quietSince = time.Now()
		}
	}
}

// lastSeq is the sequence of the last message in the bucket's stream.
func (n *NATSStore) lastSeq(ctx context.Context) (uint64, error) {
	st, err := n.kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	kst, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return 0, errors.New("unexpected bucket status")
	}
	return kst.StreamInfo().State.LastSeq, nil
}

func update(e jetstream.KeyValueEntry) Update {
	op := e.Operation()
	return Update{Key: e.Key(), Value: e.Value(), Deleted: op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge}
}
