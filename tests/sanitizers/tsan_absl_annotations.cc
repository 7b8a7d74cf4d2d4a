// ThreadSanitizer annotations for Debian's prebuilt Abseil, linked only into
// the batcher tests of a DYTSERVE_SANITIZE=thread build.
//
// libabsl_synchronization.so is not built with -fsanitize=thread, so TSan does
// not see absl::Mutex or absl::Notification synchronize anything and reports
// every access they guard as a race. Defining the same member functions in
// the executable interposes them (the library calls its own public entry
// points through the PLT too); each definition tells TSan what the real one
// does -- acquire, release, or both for waits -- and calls the real one,
// found with dlsym(RTLD_NEXT). Abseil's own TSan build places the same
// annotations inside the mutex; this reproduces them at the API boundary.
//
// The real *WithTimeout functions call the *WithDeadline ones through the
// PLT, which would annotate the same wait twice; here they call this file's
// *WithDeadline instead and never reach the library's own.
//
// Conditions are evaluated by whichever thread holds the mutex at the time,
// sometimes inside another thread's Unlock, while this file has already told
// TSan that the mutex was released. Each condition is therefore wrapped to
// acquire the mutex's happens-before state before it runs and publish its
// thread's state after, which is what holding the mutex guarantees.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/base/options.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

#if !defined(__SANITIZE_THREAD__) && !(defined(__has_feature) && __has_feature(thread_sanitizer))
#error "tsan_absl_annotations.cc belongs in -fsanitize=thread builds only"
#endif

namespace {

#define DYTSERVE_STR2(x) #x
#define DYTSERVE_STR(x) DYTSERVE_STR2(x)

// `mangled` is an Itanium-mangled name with '@' where Abseil's inline
// namespace goes, so that a new Debian Abseil (a new namespace name) still
// resolves, or fails here by name instead of silently annotating nothing.
void* RealSymbol(const char* mangled) {
  static const char kNamespace[] = DYTSERVE_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  std::string name;
  for (const char* p = mangled; *p != '\0'; ++p) {
    if (*p == '@') {
      name += std::to_string(std::strlen(kNamespace));
      name += kNamespace;
    } else {
      name += *p;
    }
  }
  void* real = dlsym(RTLD_NEXT, name.c_str());
  if (real == nullptr) {
    std::fprintf(stderr, "tsan_absl_annotations: %s not found in Abseil\n", name.c_str());
    std::abort();
  }
  return real;
}

#define DYTSERVE_REAL(type, mangled) static const auto real = reinterpret_cast<type>(RealSymbol(mangled))

struct AnnotatedCondition {
  const absl::Condition* cond;
  absl::Mutex* mu;
};

bool EvalAnnotated(AnnotatedCondition* c) {
  __tsan_acquire(c->mu);
  const bool holds = c->cond->Eval();
  __tsan_release(c->mu);
  return holds;
}

// A wait releases the mutex and takes it back.
void BeforeWait(absl::Mutex* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}
void AfterWait(absl::Mutex* mu, unsigned flags) {
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}

// absl::Notification is a Mutex followed by the atomic<bool> that
// HasBeenNotified() reads inline (in instrumented code); Notify() stores it in
// the library. A release on that address pairs with both.
void* NotifiedFlag(const absl::Notification* n) {
  static_assert(sizeof(absl::Mutex) == sizeof(void*) && sizeof(absl::Notification) == 2 * sizeof(void*),
                "absl::Notification's layout changed; revisit NotifiedFlag");
  return const_cast<char*>(reinterpret_cast<const char*>(n)) + sizeof(absl::Mutex);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

Mutex::~Mutex() {
  DYTSERVE_REAL(void (*)(Mutex*), "_ZN4absl@5MutexD2Ev");
  __tsan_mutex_destroy(this, 0);
  real(this);
}

void Mutex::Lock() {
  DYTSERVE_REAL(void (*)(Mutex*), "_ZN4absl@5Mutex4LockEv");
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

bool Mutex::TryLock() {
  DYTSERVE_REAL(bool (*)(Mutex*), "_ZN4absl@5Mutex7TryLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_try_lock);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::Unlock() {
  DYTSERVE_REAL(void (*)(Mutex*), "_ZN4absl@5Mutex6UnlockEv");
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderLock() {
  DYTSERVE_REAL(void (*)(Mutex*), "_ZN4absl@5Mutex10ReaderLockEv");
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::ReaderTryLock() {
  DYTSERVE_REAL(bool (*)(Mutex*), "_ZN4absl@5Mutex13ReaderTryLockEv");
  const unsigned flags = __tsan_mutex_read_lock | __tsan_mutex_try_lock;
  __tsan_mutex_pre_lock(this, flags);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, flags | (locked ? 0 : __tsan_mutex_try_lock_failed), 0);
  return locked;
}

void Mutex::ReaderUnlock() {
  DYTSERVE_REAL(void (*)(Mutex*), "_ZN4absl@5Mutex12ReaderUnlockEv");
  __tsan_mutex_pre_unlock(this, __tsan_mutex_read_lock);
  real(this);
  __tsan_mutex_post_unlock(this, __tsan_mutex_read_lock);
}

void Mutex::Await(const Condition& cond) {
  DYTSERVE_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl@5Mutex5AwaitERKNS0_9ConditionE");
  AnnotatedCondition c{&cond, this};
  BeforeWait(this, 0);
  real(this, Condition(&EvalAnnotated, &c));
  AfterWait(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  return AwaitWithDeadline(cond, Now() + timeout);
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  DYTSERVE_REAL(bool (*)(Mutex*, const Condition&, Time),
                "_ZN4absl@5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  AnnotatedCondition c{&cond, this};
  BeforeWait(this, 0);
  const bool holds = real(this, Condition(&EvalAnnotated, &c), deadline);
  AfterWait(this, 0);
  return holds;
}

void Mutex::LockWhen(const Condition& cond) {
  DYTSERVE_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl@5Mutex8LockWhenERKNS0_9ConditionE");
  AnnotatedCondition c{&cond, this};
  __tsan_mutex_pre_lock(this, 0);
  real(this, Condition(&EvalAnnotated, &c));
  __tsan_mutex_post_lock(this, 0, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  return LockWhenWithDeadline(cond, Now() + timeout);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  DYTSERVE_REAL(bool (*)(Mutex*, const Condition&, Time),
                "_ZN4absl@5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  AnnotatedCondition c{&cond, this};
  __tsan_mutex_pre_lock(this, 0);
  const bool holds = real(this, Condition(&EvalAnnotated, &c), deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return holds;
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  DYTSERVE_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl@5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  AnnotatedCondition c{&cond, this};
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  real(this, Condition(&EvalAnnotated, &c));
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  return ReaderLockWhenWithDeadline(cond, Now() + timeout);
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  DYTSERVE_REAL(bool (*)(Mutex*, const Condition&, Time),
                "_ZN4absl@5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  AnnotatedCondition c{&cond, this};
  __tsan_mutex_pre_lock(this, __tsan_mutex_read_lock);
  const bool holds = real(this, Condition(&EvalAnnotated, &c), deadline);
  __tsan_mutex_post_lock(this, __tsan_mutex_read_lock, 0);
  return holds;
}

void CondVar::Wait(Mutex* mu) {
  DYTSERVE_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl@7CondVar4WaitEPNS0_5MutexE");
  BeforeWait(mu, 0);
  real(this, mu);
  AfterWait(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  return WaitWithDeadline(mu, Now() + timeout);
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  DYTSERVE_REAL(bool (*)(CondVar*, Mutex*, Time), "_ZN4absl@7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  BeforeWait(mu, 0);
  const bool timed_out = real(this, mu, deadline);
  AfterWait(mu, 0);
  return timed_out;
}

void Notification::Notify() {
  DYTSERVE_REAL(void (*)(Notification*), "_ZN4absl@12Notification6NotifyEv");
  __tsan_release(NotifiedFlag(this));
  real(this);
}

void Notification::WaitForNotification() const {
  DYTSERVE_REAL(void (*)(const Notification*), "_ZNK4absl@12Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(NotifiedFlag(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  return WaitForNotificationWithDeadline(Now() + timeout);
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  DYTSERVE_REAL(bool (*)(const Notification*, Time),
                "_ZNK4absl@12Notification31WaitForNotificationWithDeadlineENS0_4TimeE");
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(NotifiedFlag(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
