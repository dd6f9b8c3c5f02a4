// inventory.adjust and email.batch against real postgres, with the maildir
// transport writing into a temp directory.
#include <catch2/catch.hpp>

#include <dirent.h>

#include "jobs/mail.h"
#include "tests/jobs/shop_fixture.h"

namespace jobs_inventory_email_test {

using namespace clusterd;
using namespace clusterd::jobs;
using clusterd::test::ShopFixture;
using clusterd::test::TempDir;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Fails every recipient at a given domain, delivers the rest to a maildir.
class FlakyTransport : public Transport {
 public:
  FlakyTransport(std::string dir, std::string bad) : inner_(makeMaildirTransport(dir)), bad_(bad) {}
  Result<void> send(const Message& m) override {
    if (m.domain() == bad_) return Error{"550 mailbox unavailable"};
    return inner_->send(m);
  }
  std::string describe() const override { return "flaky"; }

 private:
  std::unique_ptr<Transport> inner_;
  std::string bad_;
};

}  // namespace

TEST_CASE("inventory.adjust applies a batch of deltas and sets once", "[jobs][inventory][postgres]") {
  ShopFixture f(5, 10);
  nlohmann::json data = {{"adjustments",
                          {{{"sku", "SKU-000001"}, {"delta", 5}},
                           {{"sku", "SKU-000002"}, {"delta", -10}},
                           {{"sku", "SKU-000003"}, {"set", 42}}}}};
  auto r = f.runJob(adjustInventory, "inv-1", kInventoryAdjust, data);
  REQUIRE(r.outcome == Outcome::kDone);
  CHECK(f.pg.scalar("SELECT string_agg(stock::text, ',' ORDER BY id) FROM variants") ==
        "15,0,42,10,10");
  CHECK(f.invalidated == std::set<std::string>{"SKU-000001", "SKU-000002", "SKU-000003"});
  auto again = f.runJob(adjustInventory, "inv-1", kInventoryAdjust, data);
  CHECK(again.message == "already processed (job ledger)");
  CHECK(f.pg.scalar("SELECT string_agg(stock::text, ',' ORDER BY id) FROM variants") ==
        "15,0,42,10,10");
}

TEST_CASE("inventory.adjust never takes stock below zero and applies nothing of a bad batch",
          "[jobs][inventory][postgres]") {
  ShopFixture f(3, 2);
  auto neg = f.runJob(adjustInventory, "inv-2", kInventoryAdjust,
                      {{"adjustments",
                        {{{"sku", "SKU-000001"}, {"delta", 1}}, {{"sku", "SKU-000002"}, {"delta", -3}}}}});
  CHECK(neg.outcome == Outcome::kFail);
  CHECK(neg.message.find("data.adjustments[1]") != std::string::npos);
  auto unknown = f.runJob(adjustInventory, "inv-3", kInventoryAdjust,
                          {{"adjustments", {{{"sku", "NOPE"}, {"set", 1}}}}});
  CHECK(unknown.outcome == Outcome::kFail);
  auto malformed = f.runJob(adjustInventory, "inv-4", kInventoryAdjust,
                            {{"adjustments", {{{"sku", "SKU-000001"}, {"delta", 1}, {"set", 2}}}}});
  CHECK(malformed.outcome == Outcome::kFail);
  CHECK(f.pg.scalar("SELECT sum(stock) FROM variants") == "6");
  CHECK(f.pg.scalar("SELECT count(*) FROM job_ledger") == "0");
}

TEST_CASE("email.batch delivers one maildir file per confirmed order, even when run again",
          "[jobs][email][postgres]") {
  ShopFixture f(5, 100);
  TempDir dir;
  config::MailSection mail;
  Mailer mailer(f.loop.get(), makeMaildirTransport(dir.path()), mail);
  f.services.mailer = &mailer;
  for (int i = 0; i < 7; ++i) {
    int64_t id = f.placeOrder(fmt::format("u{}@example.com", i), {{"SKU-000001", 1}});
    REQUIRE(f.runJob(processOrder, fmt::format("o{}", i), kOrderProcess, {{"order_id", id}}).outcome ==
            Outcome::kDone);
  }
  auto r = f.runJob(sendEmailBatch, "e1", kEmailBatch, {{"limit", 5}});
  REQUIRE(r.outcome == Outcome::kDone);
  CHECK(r.result["sent"] == 5);
  // A full batch asks for a follow-up.
  CHECK(f.enqueued.back().name == "email.batch");
  // A crash after delivery but before COMMIT would send these again: simulate by resetting.
  f.pg.query("UPDATE email_outbox SET status = 'pending' WHERE id <= 2");
  auto r2 = f.runJob(sendEmailBatch, "e2", kEmailBatch, nlohmann::json::object());
  CHECK(r2.result["sent"] == 4);
  auto files = listDir(dir.path() + "/new");
  CHECK(files.size() == 7);
  CHECK(listDir(dir.path() + "/tmp").empty());
  CHECK(f.pg.scalar("SELECT count(*) FROM email_outbox WHERE status = 'sent'") == "7");
  std::string text = test::readFile(dir.path() + "/new/" + files[0]);
  CHECK(text.find("Subject: Order #") != std::string::npos);
  CHECK(text.find("Message-ID: <outbox-") != std::string::npos);
  auto empty = f.runJob(sendEmailBatch, "e3", kEmailBatch, nlohmann::json::object());
  CHECK(empty.message == "outbox empty");
}

TEST_CASE("email.batch retries a failing recipient alone", "[jobs][email][postgres]") {
  ShopFixture f(2, 100);
  TempDir dir;
  config::MailSection mail;
  Mailer mailer(f.loop.get(), std::make_shared<FlakyTransport>(dir.path(), "broken.example"), mail);
  f.services.mailer = &mailer;
  for (const char* who : {"a@example.com", "b@broken.example", "c@example.com"}) {
    int64_t id = f.placeOrder(who, {{"SKU-000001", 1}});
    f.runJob(processOrder, std::string("o-") + who, kOrderProcess, {{"order_id", id}});
  }
  f.enqueued.clear();
  auto r = f.runJob(sendEmailBatch, "e1", kEmailBatch, nlohmann::json::object());
  CHECK(r.result["sent"] == 2);
  CHECK(r.result["failed"] == 1);
  CHECK(listDir(dir.path() + "/new").size() == 2);
  auto rows = f.pg.query("SELECT recipient, status, attempts, last_error,"
                         " next_attempt_at > now() FROM email_outbox WHERE status <> 'sent'");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0][0] == "b@broken.example");
  CHECK(rows[0][1] == "pending");
  CHECK(rows[0][2] == "1");
  CHECK(rows[0][3] == "550 mailbox unavailable");
  CHECK(rows[0][4] == "t");
  // A delayed follow-up batch is scheduled for the retry.
  REQUIRE(f.enqueued.size() == 1);
  CHECK(f.enqueued[0].delay > 0ms);
  // When it is due, only that row is tried again.
  f.pg.query("UPDATE email_outbox SET next_attempt_at = now() WHERE status = 'pending'");
  auto again = f.runJob(sendEmailBatch, "e2", kEmailBatch, nlohmann::json::object());
  CHECK(again.result["sent"] == 0);
  CHECK(again.result["failed"] == 1);
  CHECK(f.pg.scalar("SELECT attempts FROM email_outbox WHERE status = 'pending'") == "2");
}

TEST_CASE("per-domain throttling defers messages over the limit", "[jobs][email]") {
  DomainThrottle t({{"slow.example", 2}});
  CHECK(t.admit("fast.example", 0) == 0);
  CHECK(t.admit("slow.example", 0) == 0);
  CHECK(t.admit("slow.example", 0) == 0);
  int64_t wait = t.admit("slow.example", 0);
  CHECK(wait > 29'000);
  CHECK(wait <= 30'001);
  CHECK(t.admit("slow.example", 30'001) == 0);
}

TEST_CASE("the order confirmation names the order and its lines", "[jobs][email]") {
  auto m = renderMessage(9, 1700000000, "shop@localhost", "ada@example.com", "order_confirmed",
                         {{"order_id", 77},
                          {"lines", {{{"sku", "SKU-000001"}, {"qty", 2}, {"price_cents", 150}}}},
                          {"total_cents", 300}});
  REQUIRE(m.ok());
  CHECK(m->subject == "Order #77 confirmed");
  CHECK(m->body.find("SKU-000001") != std::string::npos);
  CHECK(m->body.find("Total: 3.00") != std::string::npos);
  CHECK(m->raw().find("\r\nTo: ada@example.com\r\n") != std::string::npos);
  CHECK_FALSE(renderMessage(1, 0, "f", "t@x", "nope", {}).ok());
}

}  // namespace jobs_inventory_email_test
