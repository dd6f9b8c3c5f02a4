// Verbs of the master module (placeholder until they land).
#include "cli/commands.h"

namespace clusterd::cli {
void addMasterCommands(CLI::App&, CliContext&) {}
}  // namespace clusterd::cli
