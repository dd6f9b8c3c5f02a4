// Declarations shared by the loader's files (not part of the public API):
// reading one app, the built-in worker's settings, PM2 compatibility, the
// top-level sections, and the checks that span several apps.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/load.h"
#include "config/reader.h"

namespace clusterd::config {

// One app while it is being read: the spec plus what the cross-app checks
// and the final resolution need to know about where things were written.
struct AppDraft {
  AppSpec spec;
  std::string path;      // "apps[1]"
  std::string base_dir;  // the ecosystem file's directory
  // Where the app's mapping and some keys are (null_mark when absent).
  YAML::Mark at = YAML::Mark::null_mark();
  YAML::Mark name_at = YAML::Mark::null_mark();
  YAML::Mark script_at = YAML::Mark::null_mark();
  YAML::Mark listen_at = YAML::Mark::null_mark();
  YAML::Mark health_listen_at = YAML::Mark::null_mark();
  YAML::Mark uid_at = YAML::Mark::null_mark();
  YAML::Mark gid_at = YAML::Mark::null_mark();
  bool has_name = false;
  bool has_script = false;
  bool exec_mode_set = false;
  bool instances_max = false;         // `instances: max`
  std::optional<int64_t> instances;   // a number as written (-1 or N)
  bool defines_selected_env = false;  // has env_<--env name>
  std::map<std::string, std::string> selected_env;
  // Built-in worker keys seen (`queues`, `http`), to reject them on other apps.
  std::vector<std::pair<std::string, YAML::Mark>> worker_keys;
  std::vector<std::pair<std::string, YAML::Mark>> process_keys;  // interpreter, args
};

// Reads apps[index] into `draft`; errors go to the reader.
void readApp(Reader& r, const YAML::Node& node, size_t index, const LoadOptions& options,
             AppDraft& draft);

// The builtin:worker keys of an app: `queues`, `health_listen` and `http`.
void readWorkerQueues(Reader& r, const Reader::Entry& e, const std::string& path,
                      WorkerSpec& worker);
void readHealthListen(Reader& r, const Reader::Entry& e, const std::string& path,
                      const std::string& base_dir, WorkerSpec& worker);
void readWorkerHttp(Reader& r, const Reader::Entry& e, const std::string& path, WorkerSpec& worker);
// An app whose job API has no token must listen on loopback only.
void checkJobApi(Reader& r, const AppSpec& app, const YAML::Mark& at, const std::string& path);
// True for 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and "localhost".
bool isLoopbackHost(const std::string& host);

// A PM2 key clusterd knows about but does not implement: accepted with a
// warning when it changes nothing here, rejected with the reason otherwise.
// False when `key` is not such a key.
bool readPm2OnlyKey(Reader& r, const Reader::Entry& e, const std::string& path);

// `listen:` text into an address; relative Unix paths against `base_dir`.
std::optional<ListenAddress> parseListen(const std::string& text, const std::string& base_dir,
                                         std::string& error);

// Top-level sections.
void readQueueSection(Reader& r, const Reader::Entry& e, QueueSection& out);
void readPostgresSection(Reader& r, const Reader::Entry& e, PostgresSection& out);
void readMailSection(Reader& r, const Reader::Entry& e, const std::string& base_dir,
                     MailSection& out);
void readHandlersSection(Reader& r, const Reader::Entry& e, std::vector<HandlerSpec>& out);

// Checks across apps (names, listen and health_listen addresses, --env) and
// resolution of `instances` against `cores`.
void checkApps(Reader& r, std::vector<AppDraft>& drafts, const LoadOptions& options, int cores);

// "orders", "email.batch": queue and job names clusterd accepts.
bool isValidQueueName(const std::string& name);

// An absolute, lexically normalised path: `path` resolved against `base`.
std::string absolutePath(const std::string& path, const std::string& base);

}  // namespace clusterd::config
