// SPDX-License-Identifier: Apache-2.0
// Undo: the scope guard of a multi-step setup. Each step that made
// something pushes how to undo it; unless the setup commits, the steps run
// in reverse order when the guard goes out of scope.
//
// State: the undo steps and whether the setup committed.
// Thread safety: not thread-safe; one setup (e.g. VfioSource::Start) owns
// it. I/O: none of its own; the steps do whatever they were given.
// Requires: what the steps capture outlives the guard.
#ifndef PHYSPOOL_VFIO_UNDO_H_
#define PHYSPOOL_VFIO_UNDO_H_

#include <functional>
#include <utility>
#include <vector>

namespace physpool::vfio {

class Undo {
 public:
  Undo() = default;
  Undo(const Undo&) = delete;
  Undo& operator=(const Undo&) = delete;
  ~Undo() {
    if (committed_) return;
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) (*it)();
  }
  void Push(std::function<void()> f) { steps_.push_back(std::move(f)); }
  void Commit() { committed_ = true; }

 private:
  std::vector<std::function<void()>> steps_;
  bool committed_ = false;
};

}  // namespace physpool::vfio

#endif  // PHYSPOOL_VFIO_UNDO_H_
