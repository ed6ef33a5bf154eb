package jails

// lru is a map whose entries are also kept in a list ordered by their last
// update (oldest first), so that stale entries can be pruned and the
// oldest evicted in O(1). It is not safe for concurrent use.
type lru[K comparable, V any] struct {
	m          map[K]*lruNode[K, V]
	head, tail *lruNode[K, V] // head = least recently touched
}

type lruNode[K comparable, V any] struct {
	key        K
	val        V
	last       int64 // unix nanoseconds of the last touch
	prev, next *lruNode[K, V]
}

func newLRU[K comparable, V any]() *lru[K, V] {
	return &lru[K, V]{m: make(map[K]*lruNode[K, V])}
}

func (l *lru[K, V]) len() int { return len(l.m) }

// get returns the node for k, or nil.
func (l *lru[K, V]) get(k K) *lruNode[K, V] { return l.m[k] }

// add inserts a new node for k (which must be absent) at the tail.
func (l *lru[K, V]) add(k K, now int64) *lruNode[K, V] {
	n := &lruNode[K, V]{key: k, last: now}
	l.m[k] = n
	l.pushBack(n)
	return n
}

// touch marks n as updated at now and moves it to the tail. Times are
// expected to be non-decreasing; an older time keeps the node's later one.
func (l *lru[K, V]) touch(n *lruNode[K, V], now int64) {
	if now > n.last {
		n.last = now
	}
	if l.tail == n {
		return
	}
	l.unlink(n)
	l.pushBack(n)
}

// remove deletes n.
func (l *lru[K, V]) remove(n *lruNode[K, V]) {
	l.unlink(n)
	delete(l.m, n.key)
}

// oldest returns the least recently touched node, or nil.
func (l *lru[K, V]) oldest() *lruNode[K, V] { return l.head }

// pruneBefore removes nodes last touched before t, oldest first, and
// calls drop (if not nil) for each. It returns how many it removed.
func (l *lru[K, V]) pruneBefore(t int64, drop func(*lruNode[K, V])) int {
	n := 0
	for l.head != nil && l.head.last < t {
		h := l.head
		l.remove(h)
		if drop != nil {
			drop(h)
		}
		n++
	}
	return n
}

// each calls fn for every node, oldest first; fn may remove the node it
// is given.
func (l *lru[K, V]) each(fn func(*lruNode[K, V])) {
	for n := l.head; n != nil; {
		next := n.next
		fn(n)
		n = next
	}
}

func (l *lru[K, V]) pushBack(n *lruNode[K, V]) {
	n.prev, n.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = n
	} else {
		l.head = n
	}
	l.tail = n
}

func (l *lru[K, V]) unlink(n *lruNode[K, V]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
}
