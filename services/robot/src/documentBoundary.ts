import type { Page, Request } from 'playwright-core';

/** Watches a page for the start of a new document in its main frame. */
export interface DocumentWatch {
  /** True once the main frame has requested a new document since the watch began. */
  readonly navigated: boolean;
  /** Stops watching. */
  stop(): void;
}

/**
 * Notes whether the main frame issues a navigation request (a new document: a navigate, a link, a form submit, a
 * redirect). Same-document changes (history API, fragments) issue no request: the page's JavaScript memory survives
 * them, so they are no boundary a restore point could be taken at.
 */
export function watchDocuments(page: Page): DocumentWatch {
  let navigated = false;
  const onRequest = (request: Request) => {
    if (navigated || !request.isNavigationRequest()) return;
    try {
      if (request.frame() === page.mainFrame()) navigated = true;
    } catch {
      // A service worker's request has no frame: not a document of this page.
    }
  };
  page.on('request', onRequest);
  return {
    get navigated() {
      return navigated;
    },
    stop: () => {
      page.off('request', onRequest);
    },
  };
}

/** True for the URLs a restore point may reopen: http and https only. */
export function isRestorableUrl(url: string): boolean {
  try {
    const { protocol } = new URL(url);
    return protocol === 'http:' || protocol === 'https:';
  } catch {
    return false;
  }
}
