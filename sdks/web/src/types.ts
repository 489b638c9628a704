export type Properties = Record<string, unknown>;

/** One event as capture receives it (schemas/event.schema.json). */
export interface CaptureEvent {
  event: string;
  distinct_id: string;
  properties: Properties;
  /** RFC 3339 with milliseconds, the page's clock; capture corrects it with the batch's sent_at. */
  timestamp: string;
  uuid: string;
}

/** Why events were not delivered: reported to `onError`, never thrown at the page. */
export interface DeliveryError {
  /** 'rejected': capture refused them for good (4xx); 'dropped': the queue was full. */
  kind: 'rejected' | 'dropped' | 'invalid';
  status?: number;
  message: string;
  events: CaptureEvent[];
}
