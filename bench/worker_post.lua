-- wrk script: POST one job per request to the job API (clusterd worker or
-- the BullMQ endpoint, which take the same body).
wrk.method = "POST"
wrk.body = '{"name":"noop","data":{"order":1234,"sku":"SKU-1","qty":2}}'
wrk.headers["Content-Type"] = "application/json"
