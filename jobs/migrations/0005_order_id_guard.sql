-- One row while PostgreSQL has not recovered from a crash since the order id
-- sequence was last moved past every id a crash can take back
-- (jobs/order_ids.h). UNLOGGED on purpose: PostgreSQL empties the table in
-- every crash recovery and keeps it across a clean restart, so an empty table
-- is what tells the checkout pool to move the sequence on. The row is written
-- here, so that an existing shop's ids move on at its next crash, not now.
CREATE UNLOGGED TABLE order_id_guard (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  since timestamptz NOT NULL DEFAULT now()
);
INSERT INTO order_id_guard DEFAULT VALUES;
