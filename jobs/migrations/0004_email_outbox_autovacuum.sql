-- The outbox is a queue: every row is inserted pending and updated once when
-- it is sent, and each update leaves an entry for a dead row in the
-- pending-email index (email_outbox_due) until a vacuum removes it. With the
-- default thresholds (a fifth of the table) a large outbox goes hours between
-- vacuums while email.batch walks an index that grows without bound; vacuum it
-- after 1% of the table plus 1,000 updates instead.
ALTER TABLE email_outbox SET (autovacuum_vacuum_scale_factor = 0.01,
                              autovacuum_vacuum_threshold = 1000);
