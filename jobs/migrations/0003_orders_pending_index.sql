-- The order sweeper (jobs/order_sweeper.h) pages through the orders still
-- pending past a grace period, oldest first. Only pending orders are in this
-- index, so it stays as small as the backlog however many orders exist.
CREATE INDEX orders_pending_created_at ON orders (created_at, id) WHERE status = 'pending';
