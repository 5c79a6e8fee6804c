// SPDX-License-Identifier: Apache-2.0
// physpool::Arena and physpool::Buffer (client.h): thin handles over
// client_internal::ArenaShared.
#include <utility>

#include "client/arena_shared.h"
#include "physpool/client.h"

namespace physpool {

Buffer::Buffer(Buffer&& o) noexcept
    : arena_(std::exchange(o.arena_, nullptr)),
      id_(o.id_),
      bytes_(o.bytes_),
      runs_(std::move(o.runs_)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    Free();
    arena_ = std::exchange(o.arena_, nullptr);
    id_ = o.id_;
    bytes_ = o.bytes_;
    runs_ = std::move(o.runs_);
  }
  return *this;
}

bool Buffer::lost() const { return arena_ != nullptr && arena_->Lost(id_); }

void Buffer::Free() {
  if (arena_ == nullptr) return;
  std::exchange(arena_, nullptr)->Free(id_, runs_);
  runs_.clear();
}

Arena::Arena(std::shared_ptr<client_internal::ArenaShared> shared)
    : shared_(std::move(shared)) {}

Arena::~Arena() { shared_->Close(); }

absl::StatusOr<Buffer> Arena::Allocate(const BufferOptions& options) {
  return shared_->Allocate(options);
}
uint64_t Arena::page_size() const { return shared_->page_size(); }
uint64_t Arena::leased_bytes() const { return shared_->leased_bytes(); }
uint64_t Arena::used_bytes() const { return shared_->used_bytes(); }
size_t Arena::live_buffers() const { return shared_->live_buffers(); }
std::vector<std::string> Arena::lease_ids() const {
  return shared_->lease_ids();
}

absl::StatusOr<std::unique_ptr<Arena>> Client::CreateArena(
    ArenaOptions options) {
  auto shared = client_internal::ArenaShared::Create(impl_, page_size(),
                                                     std::move(options));
  if (!shared.ok()) return shared.status();
  return std::unique_ptr<Arena>(new Arena(*std::move(shared)));
}

}  // namespace physpool
