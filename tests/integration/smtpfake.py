"""Small SMTP receivers with scripted behaviour, for the outbound tests (loopback only).

FakeSmtp(host, port, **behaviour) listens on host:port (127.0.0.x or ::1) in a thread and records
every session: the commands it got (with their parameters), the messages it accepted, the
number of connections, and the most connections it had open at once (measured here, at the
receiver). Behaviour:
  greeting    the first line ("220 ..." by default; "421 ..." refuses the session)
  ehlo        extension lines (default PIPELINING, 8BITMIME, SIZE, CHUNKING, DSN, SMTPUTF8...)
  rcpt        fn(address, attempt) -> reply for RCPT (attempt counts RCPTs of that address)
  end         fn(message_number) -> reply after the data (message_number counts from 1)
  delay       seconds before each reply
"""
import socket
import threading
import time

DEFAULT_EXT = ["PIPELINING", "8BITMIME", "SIZE 10485760", "CHUNKING", "DSN", "SMTPUTF8",
               "ENHANCEDSTATUSCODES"]


class FakeSmtp:
    def __init__(self, host, port, greeting="220 fake.test ESMTP", ehlo=None, rcpt=None,
                 end=None, delay=0.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.host, self.port = host, port
        self.greeting = greeting
        self.ext = DEFAULT_EXT if ehlo is None else ehlo
        self.rcpt_fn = rcpt or (lambda addr, n: "250 2.1.5 ok")
        self.end_fn = end or (lambda n: "250 2.0.0 queued")
        self.delay = delay
        self.lock = threading.Lock()
        self.connections = 0
        self.open_now = 0
        self.open_max = 0
        self.commands = []          # every command line, in order
        self.messages = []          # dicts: mail, rcpts, data (bytes), accepted
        self.rcpt_attempts = {}
        self.ended = 0
        self.stopped = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def reply(self, c, text):
        if self.delay:
            time.sleep(self.delay)
        c.sendall((text + "\r\n").encode())

    def session(self, c):
        with self.lock:
            self.connections += 1
            self.open_now += 1
            self.open_max = max(self.open_max, self.open_now)
        try:
            self.dialog(c)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open_now -= 1
            c.close()

    def dialog(self, c):
        f = c.makefile("rb")
        self.reply(c, self.greeting)
        if not self.greeting.startswith("220"):
            return
        txn = None
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            with self.lock:
                self.commands.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                lines = ["fake.test"] + (self.ext if verb == "EHLO" else [])
                self.reply(c, "\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                                          for i, l in enumerate(lines)))
            elif verb == "MAIL":
                txn = {"mail": cmd, "rcpts": [], "data": b"", "accepted": False}
                self.reply(c, "250 2.1.0 ok")
            elif verb == "RCPT":
                addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                with self.lock:
                    n = self.rcpt_attempts.get(addr, 0) + 1
                    self.rcpt_attempts[addr] = n
                r = self.rcpt_fn(addr, n)
                if r.startswith("2") and txn is not None:
                    txn["rcpts"].append(cmd)
                self.reply(c, r)
            elif verb == "DATA":
                if txn is None or not txn["rcpts"]:
                    self.reply(c, "554 5.5.1 no valid recipients")
                    continue
                self.reply(c, "354 go ahead")
                data = b""
                while True:
                    l = f.readline()
                    if not l or l == b".\r\n":
                        break
                    data += l[1:] if l.startswith(b".") else l
                self.finish(c, txn, data)
                txn = None
            elif verb == "BDAT":
                parts = cmd.split()
                size = int(parts[1])
                data = f.read(size)
                if txn is None or not txn["rcpts"]:
                    self.reply(c, "554 5.5.1 no valid recipients")
                    continue
                txn["data"] += data
                if len(parts) > 2 and parts[2].upper() == "LAST":
                    self.finish(c, txn, txn["data"])
                    txn = None
                else:
                    self.reply(c, "250 2.0.0 chunk ok")
            elif verb == "RSET":
                txn = None
                self.reply(c, "250 2.0.0 ok")
            elif verb == "QUIT":
                self.reply(c, "221 2.0.0 bye")
                return
            else:
                self.reply(c, "502 5.5.2 what")

    def finish(self, c, txn, data):
        with self.lock:
            self.ended += 1
            n = self.ended
        r = self.end_fn(n)
        txn["data"] = data
        txn["accepted"] = r.startswith("2")
        with self.lock:
            self.messages.append(txn)
        self.reply(c, r)

    def accepted(self):
        with self.lock:
            return [m for m in self.messages if m["accepted"]]

    def wait_accepted(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.accepted()) >= n:
                return self.accepted()
            time.sleep(0.02)
        return self.accepted()

    def stop(self):
        self.stopped = True
        self.sock.close()
