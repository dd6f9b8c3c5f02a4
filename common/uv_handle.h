// RAII ownership of libuv handles.
//
// Design: uv_close() is asynchronous, so a handle's memory must outlive the
// close callback. UvHandle<T> allocates the handle on the heap and, on
// destruction, closes it and frees the memory from the close callback. The
// owner never waits for the loop; the loop frees the memory on its next turn.
#pragma once

#include <uv.h>

#include <utility>

namespace clusterd {

template <typename T>
class UvHandle {
 public:
  UvHandle() : h_(new T{}) {}
  ~UvHandle() { reset(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UvHandle& operator=(UvHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, nullptr);
    }
    return *this;
  }

  T* get() const { return h_; }
  T* operator->() const { return h_; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(h_); }
  // True once the handle was initialised with its uv_*_init call (libuv sets
  // the loop pointer there); an uninitialised handle is freed without closing.
  bool initialized() const { return h_ && h_->loop != nullptr; }

  void reset() {
    if (!h_) return;
    T* h = std::exchange(h_, nullptr);
    uv_handle_t* base = reinterpret_cast<uv_handle_t*>(h);
    if (h->loop == nullptr) {
      delete h;
      return;
    }
    if (!uv_is_closing(base)) {
      base->data = nullptr;
      uv_close(base, [](uv_handle_t* x) { delete reinterpret_cast<T*>(x); });
    }
    // A handle already closing belongs to the close callback its closer set up.
  }

 private:
  T* h_;
};

// Owns a plain file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace clusterd
