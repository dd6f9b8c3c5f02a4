// Every (state, event) pair of the worker state machine against a table
// written out independently of master/state.cpp.
#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <utility>

#include "master/state.h"

namespace master_state_test {

using namespace clusterd::master;
using S = WorkerState;
using E = WorkerEvent;

TEST_CASE("worker transitions match the table for every state and event pair") {
  // Pairs not listed must be rejected (std::nullopt).
  const std::map<std::pair<S, E>, S> table = {
      {{S::kStopped, E::kSpawned}, S::kLaunching},
      {{S::kWaiting, E::kSpawned}, S::kLaunching},
      {{S::kErrored, E::kSpawned}, S::kLaunching},
      {{S::kStopped, E::kSpawnFailed}, S::kErrored},
      {{S::kWaiting, E::kSpawnFailed}, S::kErrored},
      {{S::kErrored, E::kSpawnFailed}, S::kErrored},
      {{S::kLaunching, E::kReady}, S::kOnline},
      {{S::kLaunching, E::kStop}, S::kStopping},
      {{S::kOnline, E::kStop}, S::kStopping},
      {{S::kWaiting, E::kStop}, S::kStopped},
      {{S::kErrored, E::kStop}, S::kStopped},
      {{S::kLaunching, E::kCrashed}, S::kWaiting},
      {{S::kOnline, E::kCrashed}, S::kWaiting},
      {{S::kLaunching, E::kGaveUp}, S::kErrored},
      {{S::kOnline, E::kGaveUp}, S::kErrored},
      {{S::kLaunching, E::kExitedFinal}, S::kStopped},
      {{S::kOnline, E::kExitedFinal}, S::kStopped},
      {{S::kStopping, E::kExited}, S::kStopped},
  };
  int checked = 0;
  for (S s : kAllStates) {
    for (E e : kAllEvents) {
      INFO("state " << stateName(s) << ", event " << eventName(e));
      auto it = table.find({s, e});
      auto got = transition(s, e);
      if (it == table.end()) {
        CHECK_FALSE(got.has_value());
      } else {
        REQUIRE(got.has_value());
        CHECK(*got == it->second);
      }
      ++checked;
    }
  }
  CHECK(checked == 6 * 8);
}

TEST_CASE("only launching, online and stopping have a process") {
  CHECK(hasProcess(S::kLaunching));
  CHECK(hasProcess(S::kOnline));
  CHECK(hasProcess(S::kStopping));
  CHECK_FALSE(hasProcess(S::kStopped));
  CHECK_FALSE(hasProcess(S::kWaiting));
  CHECK_FALSE(hasProcess(S::kErrored));
}

TEST_CASE("state names are the ones status prints") {
  CHECK(stateName(S::kLaunching) == "launching");
  CHECK(stateName(S::kOnline) == "online");
  CHECK(stateName(S::kStopping) == "stopping");
  CHECK(stateName(S::kStopped) == "stopped");
  CHECK(stateName(S::kErrored) == "errored");
  CHECK(stateName(S::kWaiting) == "waiting");
}

}  // namespace master_state_test
