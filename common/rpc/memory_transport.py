"""An in-process bus with RabbitMQ's semantics, for unit tests only.

Queues by name, prefetch, ack/reject, dead-lettering into ``dead_letters``,
redelivery of unacked messages when a listener ends, call/reply by
correlation id with timeout. Bodies are the same JSON texts as on RabbitMQ.
"""
import collections
import dataclasses
import threading
import uuid

from common.rpc import transport as base

_shared = {}
_shared_lock = threading.Lock()


def get_shared(url):
    """One transport per url in this process, so a client and a server meet."""
    with _shared_lock:
        if url not in _shared:
            _shared[url] = MemoryTransport(url)
        return _shared[url]


@dataclasses.dataclass
class _Message:
    body: str
    message_id: str
    correlation_id: str | None = None
    reply_to: str | None = None
    redelivered: bool = False


class MemoryTransport(base.Transport):
    def __init__(self, url="memory://"):
        self.url = url
        self._cond = threading.Condition()
        self._queues = collections.defaultdict(collections.deque)
        self._replies = {}  # correlation id -> [event, body]
        self.dead_letters = []  # (queue name, body) of rejected messages

    def send(self, target, body, *, wait_for_reply=False, timeout=None):
        message = _Message(body=body, message_id=uuid.uuid4().hex)
        if not wait_for_reply:
            self._put(target.queue, message)
            return None
        message.correlation_id = uuid.uuid4().hex
        message.reply_to = "reply"
        slot = [threading.Event(), None]
        with self._cond:
            self._replies[message.correlation_id] = slot
        try:
            self._put(target.queue, message)
            if not slot[0].wait(timeout):
                raise TimeoutError()
            return slot[1]
        finally:
            with self._cond:
                self._replies.pop(message.correlation_id, None)

    def listen(self, target, prefetch):
        return _MemoryListener(self, target.queue, prefetch)

    def queue_length(self, name):
        with self._cond:
            return len(self._queues.get(name, ()))

    def _put(self, name, message, front=False):
        with self._cond:
            if front:
                self._queues[name].appendleft(message)
            else:
                self._queues[name].append(message)
            self._cond.notify_all()

    def _get(self, name, timeout):
        with self._cond:
            if self._cond.wait_for(lambda: self._queues[name], timeout):
                return self._queues[name].popleft()
            return None

    def _reply(self, correlation_id, body):
        with self._cond:
            slot = self._replies.get(correlation_id)
        if slot is not None:  # else the caller gave up: drop it, like RabbitMQ
            slot[1] = body
            slot[0].set()


class _MemoryIncoming(base.Incoming):
    def __init__(self, listener, message):
        self._listener = listener
        self._message = message
        self.body = message.body
        self.message_id = message.message_id
        self.correlation_id = message.correlation_id
        self.reply_to = message.reply_to
        self.redelivered = message.redelivered

    def ack(self):
        self._listener._settle(self._message, None)

    def reject(self):
        self._listener._settle(self._message, self._listener.queue)

    def requeue(self):
        self._listener._settle(self._message, None, requeue=True)

    def reply(self, body):
        self._listener.transport._reply(self.correlation_id, body)


class _MemoryListener(base.Listener):
    def __init__(self, transport, queue, prefetch):
        self.transport = transport
        self.queue = queue
        self._slots = threading.Semaphore(prefetch)
        self._unacked = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = None

    def start(self, on_message):
        self._thread = threading.Thread(target=self._run, args=(on_message,), daemon=True,
                                        name="rpc-memory-%s" % self.queue)
        self._thread.start()

    def _run(self, on_message):
        while not self._stopped.is_set():
            if not self._slots.acquire(timeout=0.05):
                continue
            message = self.transport._get(self.queue, timeout=0.05)
            if message is None or self._stopped.is_set():
                self._slots.release()
                if message is not None:
                    self.transport._put(self.queue, message, front=True)
                continue
            with self._lock:
                self._unacked[id(message)] = message
            on_message(_MemoryIncoming(self, message))

    def _settle(self, message, dead_letter_queue, requeue=False):
        with self._lock:
            if self._unacked.pop(id(message), None) is None:
                return  # already settled, or given back when the listener ended
        self._slots.release()
        if requeue:  # like basic.reject(requeue=True): back at the head
            message.redelivered = True
            self.transport._put(self.queue, message, front=True)
        elif dead_letter_queue is not None:
            with self.transport._cond:
                self.transport.dead_letters.append((dead_letter_queue, message.body))

    def stop(self):
        self._stopped.set()

    def wait(self):
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            unacked, self._unacked = list(self._unacked.values()), {}
        for message in reversed(unacked):  # like a closed channel: back to the queue
            message.redelivered = True
            self.transport._put(self.queue, message, front=True)

