// "Did you mean …?" for misspelled keys: the closest known key by edit
// distance (Damerau–Levenshtein, so a swapped pair of letters costs one).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace clusterd::config {

size_t editDistance(std::string_view a, std::string_view b);

// The candidate nearest to `word`, or "" when none is close enough to be a
// plausible typo (distance at most a third of the word, at least 1; or the
// word differs only in case, or in '-' vs '_').
std::string closestMatch(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace clusterd::config
