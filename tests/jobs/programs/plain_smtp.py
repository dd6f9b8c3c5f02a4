#!/usr/bin/env python3
"""plain_smtp.py PORT: an SMTP server for the SMTP transport's TLS tests.

It offers AUTH PLAIN and LOGIN but never STARTTLS, as a server does when
something between it and the client strips STARTTLS from its greeting;
accepts any credentials and any message, and prints every line it receives
to stdout, so a test can tell whether a password or a message reached it.
Python's smtpd offers no AUTH, and a client may skip AUTH when none is
offered, which would hide exactly what the tests look for.
"""
import socketserver
import sys


class Session(socketserver.StreamRequestHandler):
    def reply(self, *lines):
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self.wfile.write((line[:3] + sep + line[4:] + "\r\n").encode())

    def received(self):
        raw = self.rfile.readline()
        if not raw:
            return None
        line = raw.decode("latin-1").rstrip("\r\n")
        print(line, flush=True)
        return line

    def handle(self):
        self.reply("220 plain ESMTP")
        while True:
            line = self.received()
            if line is None:
                return
            words = line.split(" ")
            verb = words[0].upper()
            if verb == "EHLO":
                self.reply("250 plain", "250 AUTH PLAIN LOGIN", "250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 plain")
            elif verb == "AUTH" and len(words) > 1 and words[1].upper() == "LOGIN":
                for prompt in ("334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"):
                    self.reply(prompt)
                    if self.received() is None:
                        return
                self.reply("235 authenticated")
            elif verb == "AUTH":
                if len(words) < 3:  # PLAIN without an initial response
                    self.reply("334 ")
                    if self.received() is None:
                        return
                self.reply("235 authenticated")
            elif verb == "DATA":
                self.reply("354 end with a dot")
                while True:
                    body = self.received()
                    if body is None:
                        return
                    if body == ".":
                        break
                self.reply("250 queued")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.reply("250 ok")
            else:
                self.reply("502 not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", int(sys.argv[1])), Session) as server:
        server.serve_forever()
