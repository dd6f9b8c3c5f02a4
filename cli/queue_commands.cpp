// Verbs of the queue module (placeholder until they land).
#include "cli/commands.h"

namespace clusterd::cli {
void addQueueCommands(CLI::App&, CliContext&) {}
}  // namespace clusterd::cli
